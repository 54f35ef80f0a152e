"""HTTP surface of the fal simulator: fal's queue routes, the CDN stand-in, the JWKS and `/_sim`.

Queue routes (key required: `Authorization: Key KEY`; missing or wrong → 401 `{"detail": ...}`):
- `POST /{endpoint id}[?fal_webhook=URL]` with the model's JSON input → `{request_id, gateway_request_id,
  response_url, status_url, cancel_url, queue_position}`; an unknown endpoint is 404, input its schema refuses
  is 422 `{"detail": [{"loc", "msg", "type"}]}` (app.simulator.fal.validation).
- `GET /{owner}/{app}/requests/{id}/status[?logs=1]` → `IN_QUEUE` (+ `queue_position`), `IN_PROGRESS`
  (+ `logs`), `COMPLETED` (+ `metrics`; + `error`, `error_type` when it failed). Only the endpoint's first two
  path segments are in the URL, as fal's are.
- `GET /{owner}/{app}/requests/{id}` → the result `{"video": {url, content_type, file_name, file_size},
  "seed"}`; 400 while running; 422 `content_policy_violation` for a refused prompt; 500 with
  `X-Fal-Error-Type` for a failed render.
- `PUT /{owner}/{app}/requests/{id}/cancel` → 202 `{"status": "CANCELLATION_REQUESTED"}` while queued, else 400.

CDN stand-in (no key, like fal's public media URLs):
- `GET /files/{file id}/output.mp4` → the MP4 (`video/mp4`, exact `Content-Length`), 404 after `ttl_seconds`.

Key set (no key): `GET /.well-known/jwks.json` → the OKP/Ed25519 keys webhooks are signed with.

Admin API (the same key, as `Authorization: Key KEY` or `Bearer KEY`; all but the last three are
`app.simulator.admin`'s, shared with the other simulators): `GET`/`PUT`/`PATCH /_sim/faults` (`FalFaults`),
`GET`/`PATCH /_sim/config` (`FalConfig`), `POST /_sim/reset`, `GET /_sim/stats` (`{create_requests,
requests_created, renders_completed, requests: {route: count}, renders_pending}`), `GET /_sim/webhooks`
(each `{webhook_id (the request id), url, event, status, attempts, body}`), `POST /_sim/finish-renders`,
`POST /_sim/requests/{id}/expire` (the output file is gone now), `POST /_sim/rotate-key` (sign with a new key;
the old one stays in the JWKS), `GET /_sim/jwks-fetches` (how often the key set was asked for).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.core.config import SimulatorSettings
from app.simulator import admin
from app.simulator.fal.errors import FalError, not_found, rate_limited, server_error, unauthorized, unprocessable
from app.simulator.fal.runtime import FalSimulator
from app.simulator.fal.state import FILE_NAME
from app.simulator.fal.validation import check_submit
from app.simulator.lifecycle import take_burst
from app.simulator.render import VIDEO_FILE
from app.simulator.streaming import Asset, stream

MEDIA_TYPE = "video/mp4"
JWKS_PATH = "/.well-known/jwks.json"


def get_simulator(request: Request) -> FalSimulator:
    simulator: FalSimulator = request.app.state.simulator
    return simulator


SimDep = Annotated[FalSimulator, Depends(get_simulator)]


def _check_key(request: Request, simulator: FalSimulator, *, allow_bearer: bool = False) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    schemes = ("key", "bearer") if allow_bearer else ("key",)
    if scheme.lower() not in schemes or not token:
        raise unauthorized()
    expected = simulator.settings.api_key.get_secret_value()
    if not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise unauthorized("Invalid API key.")


async def api_guard(request: Request, simulator: SimDep) -> None:
    """Auth, lazy start, request counting and the 429/5xx bursts, before any queue route runs."""
    _check_key(request, simulator)
    await simulator.ensure_started()
    route_name: str = getattr(request.scope.get("route"), "name", "")
    simulator.stats.count_request(route_name, create=route_name == "submit")
    burst = take_burst(simulator.faults, route_name)
    if burst == "rate_limit":
        raise rate_limited()
    if burst == "server_error":
        raise server_error(simulator.faults.server_error_status)


async def admin_guard(request: Request, simulator: SimDep) -> None:
    _check_key(request, simulator, allow_bearer=True)
    await simulator.ensure_started()


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise unprocessable([{"loc": ["body"], "msg": "JSON decode error", "type": "json_invalid"}]) from exc


def _queue_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_guard)])

    @router.get("/{owner}/{app_name}/requests/{request_id}/status", name="status")
    async def status(owner: str, app_name: str, request_id: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        record = simulator.store.of_app(f"{owner}/{app_name}", request_id)
        logs = request.query_params.get("logs", "0").lower() in ("1", "true")
        return record.as_status(
            base_url=str(request.base_url), queue_position=simulator.store.queue_position(record), logs=logs
        )

    @router.get("/{owner}/{app_name}/requests/{request_id}", name="result")
    async def result(owner: str, app_name: str, request_id: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        record = simulator.store.of_app(f"{owner}/{app_name}", request_id)
        return record.result(simulator.files_base_url(str(request.base_url)))

    @router.put("/{owner}/{app_name}/requests/{request_id}/cancel", name="cancel")
    async def cancel(owner: str, app_name: str, request_id: str, simulator: SimDep) -> JSONResponse:
        simulator.cancel(f"{owner}/{app_name}", request_id)
        return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

    @router.post("/{endpoint:path}", name="submit")
    async def submit(endpoint: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        body = await _json_body(request)
        checked = await asyncio.to_thread(check_submit, endpoint, body)
        webhook_url = request.query_params.get("fal_webhook") or None
        if webhook_url is not None and not webhook_url.startswith(("https://", "http://")):
            raise unprocessable([{"loc": ["query", "fal_webhook"], "msg": "Invalid URL", "type": "url_parsing"}])
        record = simulator.submit(checked, base_url=str(request.base_url), webhook_url=webhook_url)
        return {
            "request_id": record.id,
            "gateway_request_id": record.id,
            **record.urls(str(request.base_url)),
            "queue_position": simulator.store.queue_position(record),
        }

    return router


def _public_router() -> APIRouter:
    router = APIRouter()

    @router.get(f"/files/{{file_id}}/{FILE_NAME}", name="download_file")
    async def download_file(file_id: str, simulator: SimDep) -> Response:
        await simulator.ensure_started()
        simulator.stats.requests["download_file"] += 1
        record = simulator.store.file(file_id)
        if record.is_expired(time.time()):
            raise not_found("File not found.")
        if record.synthetic_bytes is not None:
            asset = Asset.synthetic(MEDIA_TYPE, record.synthetic_bytes)
        else:
            if record.directory is None:
                raise not_found("File not found.")
            try:
                asset = Asset.on_disk(MEDIA_TYPE, record.directory / VIDEO_FILE)
            except FileNotFoundError:  # expired and removed between the lookup and now
                raise not_found("File not found.") from None
        faults = simulator.faults
        return stream(asset, truncate_after=faults.take_truncation(), bytes_per_second=faults.content_bytes_per_second)

    @router.get(JWKS_PATH, name="jwks")
    async def jwks(simulator: SimDep) -> dict[str, Any]:
        await simulator.ensure_started()
        simulator.stats.requests["jwks"] += 1
        if simulator.faults.jwks_unavailable:
            raise FalError(503, "The key service is temporarily unavailable.")
        return simulator.keys.jwks()

    return router


def _admin_router() -> APIRouter:
    router = admin.admin_router(
        guard=admin_guard,
        read_json=_json_body,
        invalid=lambda message, param: unprocessable(
            [{"loc": ["body", param or ""], "msg": message, "type": "value_error"}]
        ),
        not_an_object=lambda: unprocessable([{"loc": ["body"], "msg": "Must be an object", "type": "dict_type"}]),
    )

    @router.post("/requests/{request_id}/expire")
    async def expire(request_id: str, simulator: SimDep) -> dict[str, Any]:
        record = simulator.expire(request_id)
        return {"request_id": record.id, "file_id": record.file_id, "expires_at": record.expires_at}

    @router.post("/rotate-key")
    async def rotate_key(simulator: SimDep) -> dict[str, Any]:
        return {"kid": simulator.rotate_key(), **simulator.keys.jwks()}

    @router.get("/jwks-fetches")
    async def jwks_fetches(simulator: SimDep) -> dict[str, int]:
        return {"fetches": simulator.stats.requests["jwks"]}

    return router


def _error_response(exc: FalError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def fal_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, FalError)
        return _error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors = [
            {
                "loc": [str(part) for part in error.get("loc", ())],
                "msg": str(error.get("msg")),
                "type": error.get("type"),
            }
            for error in exc.errors()
        ]
        return _error_response(unprocessable(errors))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return _error_response(FalError(405, "Method not allowed."))
        if exc.status_code == 404:
            return _error_response(not_found("Not found."))
        return _error_response(FalError(exc.status_code, str(exc.detail)))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return _error_response(server_error(500))

    app.add_exception_handler(FalError, fal_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def create_fal_simulator_app(
    settings: SimulatorSettings,
    *,
    public_base_url: str | None = None,
    webhook_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The fal queue simulator as an ASGI app; its background work runs in the lifespan.

    File URLs are built from the request's base URL unless `public_base_url` (or `public_base_url` in
    `PATCH /_sim/config`) names another host, as fal's CDN is. `webhook_transport` (an httpx transport) lets an
    in-process test deliver webhooks to an ASGI app. fal's default media retention is undocumented: the
    settings' `ttl_seconds` decides how long files are served.
    """
    simulator = FalSimulator(settings, public_base_url=public_base_url, webhook_transport=webhook_transport)
    app = FastAPI(title="Video Gateway fal.ai simulator", lifespan=simulator.lifespan, openapi_url=None)
    app.state.simulator = simulator
    _install_error_handlers(app)
    # Before the queue routes: `POST /{endpoint:path}` would otherwise take `/_sim/...` as an endpoint id.
    app.include_router(_admin_router())
    app.include_router(_public_router())
    app.include_router(_queue_router())
    return app


@contextlib.asynccontextmanager
async def fal_simulator_running(app: FastAPI) -> AsyncIterator[FalSimulator]:
    """Run the simulator's background work for an app driven without lifespan (httpx `ASGITransport`)."""
    simulator: FalSimulator = app.state.simulator
    async with simulator.running():
        yield simulator


__all__ = ["create_fal_simulator_app", "fal_simulator_running"]
