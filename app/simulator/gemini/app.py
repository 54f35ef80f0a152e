"""HTTP surface of the Gemini simulator: Veo's `/v1beta` routes, the file redirect target and `/_sim`.

Google API routes (key required: `x-goog-api-key: KEY` header or `?key=KEY`; missing → 401
UNAUTHENTICATED, wrong → 403 PERMISSION_DENIED):
- `POST /v1beta/models/{model}:predictLongRunning` → `{"name": "models/{model}/operations/{id}"}`; with
  `instances[0].video = {"uri": <a sample URI this simulator handed out>}` (Veo 3.1 models) it extends that
  video by 7 s: the result is one MP4, the source followed by the new segment.
- `GET /v1beta/models/{model}/operations/{id}` → `{"name"}` while running; then `done: true` with a sample
  (`response.generateVideoResponse.generatedSamples[0].video.uri`), an `error`, or an RAI filter.
- `GET /v1beta/files/{file_id}:download?alt=media` → 302 to `/download/{file_id}?token=...`.
There is no list or delete of videos in Google's API: any other method or path is a 404 NOT_FOUND.

File host (no key; the per-file token in the query authorises it, like a presigned storage URL):
- `GET /download/{file_id}?token=...` → the MP4 (`video/mp4`, exact `Content-Length`, streamed).

Admin API (JSON; the same key, as `x-goog-api-key`, `?key=` or `Authorization: Bearer KEY`; all but the expiry
are `app.simulator.admin`'s, shared with the OpenAI simulator):
- `GET /_sim/faults` → `GeminiFaults`; `PUT /_sim/faults` replaces all knobs (missing ones take their
  defaults); `PATCH /_sim/faults` changes only the given knobs.
- `GET /_sim/config` → `GeminiConfig` (`queue_seconds`, `render_seconds`, `ttl_seconds`, `webhook_url`,
  `blocked_words`, `public_base_url`); `PATCH /_sim/config` changes the given fields.
- `POST /_sim/reset` forgets operations, deliveries, stats and faults, and restores the settings' config.
- `GET /_sim/stats` → `{create_requests, operations_created, renders_completed, requests: {route: count},
  renders_pending}`.
- `GET /_sim/webhooks` → `{"object": "list", "data": [delivery...]}`, each `{webhook_id, type,
  operation_name, video_uri, status, attempts: [{number, at, status_code, error}], body}`.
- `POST /_sim/operations/{id}/expire` makes a finished operation's file gone now (`id` is the last segment
  of the operation name); returns `{"name", "file_id", "expires_at"}`.
- `POST /_sim/finish-renders` `{"over_seconds": S}`: every running operation finishes within S seconds,
  evenly spread; returns `{"released": n}`.

Every error, including FastAPI's validation and routing errors, is answered in Google's envelope
`{"error": {"code", "message", "status"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
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
from app.simulator.gemini import files
from app.simulator.gemini.errors import (
    GoogleError,
    invalid_argument,
    not_found,
    permission_denied,
    resource_exhausted,
    server_error,
    unauthenticated,
)
from app.simulator.gemini.runtime import GeminiSimulator
from app.simulator.gemini.validation import ExtendRequest, check_create, check_model
from app.simulator.lifecycle import take_burst

STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    501: "UNIMPLEMENTED",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}


def get_simulator(request: Request) -> GeminiSimulator:
    simulator: GeminiSimulator = request.app.state.simulator
    return simulator


SimDep = Annotated[GeminiSimulator, Depends(get_simulator)]


def _check_key(request: Request, simulator: GeminiSimulator, *, allow_bearer: bool = False) -> None:
    key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
    if not key and allow_bearer:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        key = token if scheme.lower() == "bearer" else None
    if not key:
        raise unauthenticated()
    expected = simulator.settings.api_key.get_secret_value()
    if not hmac.compare_digest(key.encode(), expected.encode()):
        raise permission_denied()


async def api_guard(request: Request, simulator: SimDep) -> None:
    """Auth, lazy start, request counting and the 429/5xx bursts, before any `/v1beta` route runs."""
    _check_key(request, simulator)
    await simulator.ensure_started()
    route_name: str = getattr(request.scope.get("route"), "name", "")
    simulator.stats.count_request(route_name, create=route_name == "predict_long_running")
    burst = take_burst(simulator.faults, route_name)
    if burst == "rate_limit":
        raise resource_exhausted()
    if burst == "server_error":
        raise server_error(simulator.faults.server_error_status)


async def admin_guard(request: Request, simulator: SimDep) -> None:
    _check_key(request, simulator, allow_bearer=True)
    await simulator.ensure_started()


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_argument("Invalid JSON payload received. Unexpected token.") from exc


def _api_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_guard)])

    # FastAPI has no custom-method syntax: `{model}:predictLongRunning` is one path segment, split here.
    @router.post("/models/{model_action}", name="predict_long_running")
    async def predict_long_running(model_action: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        model, _, method = model_action.partition(":")
        check_model(model, method)
        body = await _json_body(request)
        checked = await asyncio.to_thread(check_create, model, body)
        base_url = str(request.base_url)
        if isinstance(checked, ExtendRequest):
            operation = simulator.extend(checked, base_url=base_url)
        else:
            operation = simulator.create(checked, base_url=base_url)
        return {"name": operation.name}

    @router.get("/files/{file_action}", name="download_file")
    async def download_file(file_action: str, request: Request, simulator: SimDep, alt: str | None = None) -> Response:
        file_id, _, action = file_action.partition(":")
        if action != "download":
            raise not_found(f"File {file_action} not found.")
        if alt != "media":
            raise invalid_argument("The download method only serves media: add alt=media to the query.")
        operation = simulator.store.file(file_id)
        files.check_available(operation, time.time())
        return files.redirect(request, operation, simulator.faults)

    @router.get("/{name:path}", name="get_operation")
    async def get_operation(name: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        operation = simulator.store.by_name(name)
        return operation.as_operation(simulator.base_url(str(request.base_url)))

    return router


def _files_router() -> APIRouter:
    router = APIRouter()

    @router.get("/download/{file_id}", name=files.DOWNLOAD_ROUTE)
    async def serve_download(file_id: str, simulator: SimDep, token: str = "") -> Response:
        await simulator.ensure_started()
        simulator.stats.requests[files.DOWNLOAD_ROUTE] += 1
        operation = simulator.store.file(file_id)
        files.check_token(operation, token)
        files.check_available(operation, time.time())
        return files.file_response(files.locate(operation), simulator.faults)

    return router


def _admin_router() -> APIRouter:
    router = admin.admin_router(
        guard=admin_guard,
        read_json=_json_body,
        invalid=lambda message, param: invalid_argument(message),
        not_an_object=lambda: invalid_argument("The JSON body must be an object."),
    )

    @router.post("/operations/{operation_id}/expire")
    async def expire(operation_id: str, simulator: SimDep) -> dict[str, Any]:
        operation = simulator.expire(operation_id)
        return {"name": operation.name, "file_id": operation.file_id, "expires_at": operation.expires_at}

    return router


def _error_response(exc: GoogleError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.code, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def google_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GoogleError)
        return _error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error_response(invalid_argument(f"Invalid value at '{where}': {first['msg']}"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code in (404, 405):  # an unknown path or method (e.g. DELETE of an operation)
            return _error_response(not_found(f"Method not found: {request.method} {request.url.path}."))
        status = STATUS_NAMES.get(exc.status_code, "UNKNOWN")
        return _error_response(GoogleError(exc.status_code, str(exc.detail), status))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return _error_response(server_error(500))

    app.add_exception_handler(GoogleError, google_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def create_gemini_simulator_app(settings: SimulatorSettings, *, public_base_url: str | None = None) -> FastAPI:
    """The Gemini (Veo) simulator as an ASGI app; its background work runs in the lifespan.

    Sample URIs are built from the request's base URL unless `public_base_url` (or `public_base_url` in
    `PATCH /_sim/config`) names another. Google keeps generated files for 2 days: a production-like stack
    passes `SimulatorSettings(ttl_seconds=172800)`; the settings' default (3600) is the OpenAI simulator's.
    """
    simulator = GeminiSimulator(settings, public_base_url=public_base_url)
    app = FastAPI(title="Video Gateway Gemini (Veo) simulator", lifespan=simulator.lifespan, openapi_url=None)
    app.state.simulator = simulator
    _install_error_handlers(app)
    app.include_router(_api_router(), prefix="/v1beta")
    app.include_router(_admin_router())
    app.include_router(_files_router())
    return app


@contextlib.asynccontextmanager
async def gemini_simulator_running(app: FastAPI) -> AsyncIterator[GeminiSimulator]:
    """Run the simulator's background work for an app driven without lifespan (httpx `ASGITransport`)."""
    simulator: GeminiSimulator = app.state.simulator
    async with simulator.running():
        yield simulator
