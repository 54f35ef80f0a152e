"""HTTP surface of the Replicate simulator: Replicate's `/v1` prediction routes, the output files and `/_sim`.

Replicate API routes (token required: `Authorization: Bearer TOKEN`, or the older `Token TOKEN`; missing or
wrong → 401 `{"title": "Unauthenticated", ...}`):
- `POST /v1/models/{owner}/{name}/predictions` `{"input": {...}, "webhook"?, "webhook_events_filter"?}` →
  201 with the prediction (`status: "starting"`). `Prefer: wait` / `Prefer: wait=N` holds the answer until
  the prediction ends or N seconds (at most 60) pass, as Replicate does. An unknown model → 404; an input the
  model's schema refuses → 422 with `invalid_fields`.
- `GET /v1/predictions/{id}` → the prediction object: `id`, `model`, `version`, `input`, `logs`, `output`
  (the video's URL once `succeeded`), `data_removed`, `error`, `status`, `source`, `created_at`,
  `started_at`, `completed_at`, `urls {get, cancel, web}`, `metrics`.
- `GET /v1/predictions?cursor=...` → `{"previous", "next", "results"}`, newest first, `list_page_size` per
  page; `next` is the URL of the next page (with its `cursor`), null on the last.
- `POST /v1/predictions/{id}/cancel` → the prediction, `canceled` unless it had already ended (then as is).
- `GET /v1/webhooks/default/secret` → `{"key": "whsec_..."}`, the secret deliveries are signed with.
There is no delete: any other method or path is a 404 in Replicate's shape.

Files (no token; the random path is the capability, like a replicate.delivery URL):
- `GET /files/{file_id}/output.mp4` → the MP4 (`video/mp4`, exact `Content-Length`, streamed); 404 once the
  prediction's data is removed.

Admin API (JSON; the same token, as `Authorization: Bearer`; all but the expiry are `app.simulator.admin`'s):
- `GET`/`PUT`/`PATCH /_sim/faults` (`ReplicateFaults`), `GET`/`PATCH /_sim/config` (`ReplicateConfig`:
  `queue_seconds`, `render_seconds`, `ttl_seconds`, `blocked_words`, `public_base_url`, `list_page_size`),
  `POST /_sim/reset`, `POST /_sim/finish-renders`.
- `GET /_sim/stats` → `{create_requests, predictions_created, renders_completed, requests: {route: count},
  renders_pending}`. Two extra counts sit in `requests`: `create_prediction_prefer_wait` (creates that asked
  to wait) and `serve_file_with_authorization` (file downloads that carried an `Authorization` header, which
  a client must never send to the file host).
- `GET /_sim/webhooks` → `{"object": "list", "data": [delivery...]}`, each `{webhook_id, event,
  prediction_id, prediction_status, url, status, attempts, body}`.
- `POST /_sim/predictions/{id}/expire` removes an ended prediction's input, output and file now; returns
  `{"id", "data_removed"}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response

from app.core.config import SimulatorSettings
from app.simulator import admin
from app.simulator.lifecycle import take_burst
from app.simulator.replicate import files
from app.simulator.replicate.errors import (
    ReplicateError,
    bad_request,
    not_found,
    server_error,
    throttled,
    unauthenticated,
)
from app.simulator.replicate.runtime import ReplicateSimulator
from app.simulator.replicate.state import decode_cursor, encode_cursor
from app.simulator.replicate.validation import check_create, check_model

_PREFER_WAIT = re.compile(r"\s*wait(?:\s*=\s*(\d{1,4}))?\s*", re.I)
STATUS_TITLES = {400: "Bad request", 401: "Unauthenticated", 403: "Forbidden", 404: "Not found", 409: "Conflict"}


def get_simulator(request: Request) -> ReplicateSimulator:
    simulator: ReplicateSimulator = request.app.state.simulator
    return simulator


SimDep = Annotated[ReplicateSimulator, Depends(get_simulator)]


def _check_token(request: Request, simulator: ReplicateSimulator) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = simulator.settings.api_key.get_secret_value()
    if scheme.lower() not in ("bearer", "token") or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise unauthenticated()


def _apply_bursts(simulator: ReplicateSimulator, route_name: str) -> None:
    burst = take_burst(simulator.faults, route_name)
    if burst == "rate_limit":
        raise throttled(simulator.faults.rate_limit_retry_after_seconds)
    if burst == "server_error":
        raise server_error(simulator.faults.server_error_status)


async def api_guard(request: Request, simulator: SimDep) -> None:
    """Auth, lazy start, request counting and the 429/5xx bursts, before any `/v1` route runs."""
    _check_token(request, simulator)
    await simulator.ensure_started()
    route_name: str = getattr(request.scope.get("route"), "name", "")
    simulator.stats.count_request(route_name, create=route_name == "create_prediction")
    _apply_bursts(simulator, route_name)


async def admin_guard(request: Request, simulator: SimDep) -> None:
    _check_token(request, simulator)
    await simulator.ensure_started()


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise bad_request("The request body is not valid JSON.") from exc


def _prefer_wait(header: str | None) -> float | None:
    """Seconds a `Prefer: wait[=N]` header asks the create to hold its answer (None: answer at once)."""
    if header is None:
        return None
    match = _PREFER_WAIT.fullmatch(header)
    if match is None:
        return None
    return float(match.group(1)) if match.group(1) else 60.0


def _api_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_guard)])

    @router.post("/models/{owner}/{name}/predictions", name="create_prediction")
    async def create_prediction(owner: str, name: str, request: Request, simulator: SimDep) -> JSONResponse:
        model = check_model(owner, name)
        body = await _json_body(request)
        create = await asyncio.to_thread(check_create, f"{owner}/{name}", model, body)
        prediction = simulator.create(create, base_url=str(request.base_url))
        wait = _prefer_wait(request.headers.get("prefer"))
        if wait is not None:
            simulator.stats.requests["create_prediction_prefer_wait"] += 1
            await simulator.wait(prediction, wait)
        return JSONResponse(prediction.as_json(simulator.base_url(str(request.base_url))), status_code=201)

    @router.get("/predictions", name="list_predictions")
    async def list_predictions(request: Request, simulator: SimDep, cursor: str | None = None) -> dict[str, Any]:
        before = decode_cursor(cursor) if cursor else None
        page, continue_from = simulator.store.page(before=before, size=simulator.config.list_page_size)
        base = simulator.base_url(str(request.base_url)).rstrip("/")
        next_url = None if continue_from is None else f"{base}/v1/predictions?cursor={encode_cursor(continue_from)}"
        return {"previous": None, "next": next_url, "results": [prediction.as_json(base) for prediction in page]}

    @router.get("/predictions/{prediction_id}", name="get_prediction")
    async def get_prediction(prediction_id: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        return simulator.store.get(prediction_id).as_json(simulator.base_url(str(request.base_url)))

    @router.post("/predictions/{prediction_id}/cancel", name="cancel_prediction")
    async def cancel_prediction(prediction_id: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        prediction = await simulator.cancel(prediction_id)
        return prediction.as_json(simulator.base_url(str(request.base_url)))

    @router.get("/webhooks/default/secret", name="webhook_secret")
    async def webhook_secret(simulator: SimDep) -> dict[str, str]:
        secret = simulator.settings.webhook_secret
        if secret is None:
            raise not_found("This account has no webhook signing secret.")
        return {"key": secret.get_secret_value()}

    return router


def _files_router() -> APIRouter:
    router = APIRouter()

    @router.get("/files/{file_id}/output.mp4", name=files.FILE_ROUTE)
    async def serve_file(file_id: str, request: Request, simulator: SimDep) -> Response:
        await simulator.ensure_started()
        simulator.stats.requests[files.FILE_ROUTE] += 1
        if "authorization" in request.headers:
            simulator.stats.requests["serve_file_with_authorization"] += 1
        # Bursts reach the file host only when it is named: it is another host than the API's.
        if files.FILE_ROUTE in simulator.faults.burst_routes:
            _apply_bursts(simulator, files.FILE_ROUTE)
        prediction = simulator.store.file(file_id)
        return files.file_response(files.locate(prediction, time.time()), simulator.faults)

    return router


def _admin_router() -> APIRouter:
    router = admin.admin_router(
        guard=admin_guard,
        read_json=_json_body,
        invalid=lambda message, param: bad_request(message),
        not_an_object=lambda: bad_request("The JSON body must be an object."),
    )

    @router.post("/predictions/{prediction_id}/expire")
    async def expire(prediction_id: str, simulator: SimDep) -> dict[str, Any]:
        prediction = await simulator.expire(prediction_id)
        return {"id": prediction.id, "data_removed": prediction.data_removed}

    return router


def _error_response(exc: ReplicateError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def replicate_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ReplicateError)
        return _error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error_response(bad_request(f"Invalid value at '{where}': {first['msg']}"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code in (404, 405):  # an unknown path or method (e.g. DELETE of a prediction)
            return _error_response(not_found())
        title = STATUS_TITLES.get(exc.status_code, "Error")
        return _error_response(ReplicateError(exc.status_code, str(exc.detail), title))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return _error_response(server_error(500))

    app.add_exception_handler(ReplicateError, replicate_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def create_replicate_simulator_app(settings: SimulatorSettings, *, public_base_url: str | None = None) -> FastAPI:
    """The Replicate simulator as an ASGI app; its background work runs in the lifespan.

    `urls` and output URLs are built from the request's base URL unless `public_base_url` (or
    `public_base_url` in `PATCH /_sim/config`) names another. Replicate removes a prediction's data an hour
    after it ends, the settings' default `ttl_seconds` (3600). Webhooks are signed with
    `settings.webhook_secret` and go to each create's own `webhook` (`settings.webhook_url` is not used).
    """
    simulator = ReplicateSimulator(settings, public_base_url=public_base_url)
    app = FastAPI(title="Video Gateway Replicate simulator", lifespan=simulator.lifespan, openapi_url=None)
    app.state.simulator = simulator
    _install_error_handlers(app)
    app.include_router(_api_router(), prefix="/v1")
    app.include_router(_admin_router())
    app.include_router(_files_router())
    return app


@contextlib.asynccontextmanager
async def replicate_simulator_running(app: FastAPI) -> AsyncIterator[ReplicateSimulator]:
    """Run the simulator's background work for an app driven without lifespan (httpx `ASGITransport`)."""
    simulator: ReplicateSimulator = app.state.simulator
    async with simulator.running():
        yield simulator
