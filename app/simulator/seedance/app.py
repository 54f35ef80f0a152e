"""HTTP surface of the Seedance simulator: ModelArk's task routes under `/api/v3`, the file host and `/_sim`.

Ark API routes (`Authorization: Bearer KEY`; missing or wrong → 401 `AuthenticationError`):
- `POST /api/v3/contents/generations/tasks` → `{"id": "cgt-…"}`; the body is checked as
  `app.simulator.seedance.validation` says (400 `InvalidParameter`, 404 for an unknown model).
- `GET /api/v3/contents/generations/tasks/{id}` → the task object (`status` queued | running | succeeded |
  failed | cancelled | expired; `content.video_url` once succeeded; `error {code, message}` once failed).
- `GET /api/v3/contents/generations/tasks?page_num=1&page_size=10&filter.status=&filter.task_ids=&filter.model=`
  → `{"items": [task…], "total", "page_num", "page_size"}`, newest first; `page_size` 1 to 500;
  `filter.task_ids` may repeat.
- `DELETE /api/v3/contents/generations/tasks/{id}` → `{}`: cancels a queued task, deletes a finished task's
  record; a running task is refused (400 `OperationDenied.InvalidState`).

File host (no key; the signed query authorises it, like the TOS URLs Ark hands out):
- `GET /files/{file_id}.mp4?X-Tos-…` → the MP4, or TOS's XML errors (403 once expired or re-encoded).

Admin API (JSON; `Authorization: Bearer KEY`; all but the expiry are `app.simulator.admin`'s):
- `GET`/`PUT`/`PATCH /_sim/faults` (`SeedanceFaults`), `GET`/`PATCH /_sim/config` (`queue_seconds`,
  `render_seconds`, `ttl_seconds`, `webhook_url` (overrides every task's `callback_url`), `blocked_words`,
  `files_base_url`), `POST /_sim/reset`, `GET /_sim/stats` (`create_requests`, `tasks_created`,
  `renders_completed`, `requests` by route, `renders_pending`), `GET /_sim/webhooks` (every callback:
  `{webhook_id, task_id, task_status, callback_url, status, attempts, body}`), `POST /_sim/finish-renders`.
- `POST /_sim/tasks/{id}/expire`: a succeeded task's URL stops working now; a queued or running task ends
  `expired` now. Returns `{"id", "status"}`.

Every API error, FastAPI's validation and routing errors included, is answered in Ark's envelope
`{"error": {"code", "message"}}`.
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
from app.simulator.lifecycle import take_burst
from app.simulator.seedance import files
from app.simulator.seedance.errors import (
    ArkError,
    bad_value,
    invalid_parameter,
    model_not_open,
    rate_limited,
    server_error,
    unauthenticated,
)
from app.simulator.seedance.runtime import SeedanceSimulator
from app.simulator.seedance.validation import check_create

TASKS = "/contents/generations/tasks"
MAX_PAGE_SIZE = 500
DEFAULT_PAGE_SIZE = 10
STATUSES = ("queued", "running", "succeeded", "failed", "cancelled", "expired")


def get_simulator(request: Request) -> SeedanceSimulator:
    simulator: SeedanceSimulator = request.app.state.simulator
    return simulator


SimDep = Annotated[SeedanceSimulator, Depends(get_simulator)]


def _check_key(request: Request, simulator: SeedanceSimulator) -> None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    expected = simulator.settings.api_key.get_secret_value()
    if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), expected.encode()):
        raise unauthenticated()


async def api_guard(request: Request, simulator: SimDep) -> None:
    """Auth, lazy start, request counting and the 429/5xx bursts, before any `/api/v3` route runs."""
    _check_key(request, simulator)
    await simulator.ensure_started()
    route_name: str = getattr(request.scope.get("route"), "name", "")
    simulator.stats.count_request(route_name, create=route_name == "create_task")
    burst = take_burst(simulator.faults, route_name)
    if burst == "rate_limit":
        raise rate_limited(simulator.faults.rate_limit_code)
    if burst == "server_error":
        raise server_error(simulator.faults.server_error_status)


async def admin_guard(request: Request, simulator: SimDep) -> None:
    _check_key(request, simulator)
    await simulator.ensure_started()


async def _json_body(request: Request) -> Any:
    try:
        return json.loads(await request.body())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid_parameter("The request body is not valid JSON.") from exc


def _page_params(request: Request) -> tuple[int, int, str | None, list[str], str | None]:
    query = request.query_params
    numbers: list[int] = []
    for name, default, high in (("page_num", 1, 10_000), ("page_size", DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE)):
        text = query.get(name, str(default))
        if not text.isdigit() or not 1 <= int(text) <= high:
            raise bad_value(name, f"must be an integer in [1, {high}].")
        numbers.append(int(text))
    status = query.get("filter.status")
    if status is not None and status not in STATUSES:
        raise bad_value("filter.status", f"must be one of {', '.join(STATUSES)}.")
    return numbers[0], numbers[1], status, query.getlist("filter.task_ids"), query.get("filter.model")


def _api_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_guard)])

    @router.post(TASKS, name="create_task")
    async def create_task(request: Request, simulator: SimDep) -> dict[str, Any]:
        body = await _json_body(request)
        model = body.get("model") if isinstance(body, dict) else None
        if isinstance(model, str) and model in simulator.faults.model_not_open:
            raise model_not_open(model)
        create = await asyncio.to_thread(check_create, body)  # decodes the image: off the event loop
        task = simulator.create(create, base_url=str(request.base_url))
        return {"id": task.id}

    @router.get(TASKS, name="list_tasks")
    async def list_tasks(request: Request, simulator: SimDep) -> dict[str, Any]:
        page_num, page_size, status, task_ids, model = _page_params(request)
        tasks, total = simulator.store.page(
            page_num=page_num, page_size=page_size, status=status, task_ids=task_ids, model=model
        )
        return {
            "items": [simulator.task_json(task) for task in tasks],
            "total": total,
            "page_num": page_num,
            "page_size": page_size,
        }

    @router.get(TASKS + "/{task_id}", name="get_task")
    async def get_task(task_id: str, simulator: SimDep) -> dict[str, Any]:
        return simulator.task_json(simulator.store.get(task_id))

    @router.delete(TASKS + "/{task_id}", name="delete_task")
    async def delete_task(task_id: str, simulator: SimDep) -> dict[str, Any]:
        await simulator.delete(task_id)
        return {}

    return router


def _files_router() -> APIRouter:
    router = APIRouter()

    @router.get("/files/{name}", name=files.DOWNLOAD_ROUTE)
    async def download_file(name: str, request: Request, simulator: SimDep) -> Response:
        await simulator.ensure_started()
        simulator.stats.requests[files.DOWNLOAD_ROUTE] += 1
        file_id, _, extension = name.partition(".")
        task = simulator.store.by_file(file_id) if extension == "mp4" else None
        # The raw query as sent: a signature is only as good as the exact bytes it signed.
        refused = files.refusal(task, request.scope.get("query_string", b""), time.time())
        if refused is not None:
            return refused
        assert task is not None
        asset = files.locate(task)
        if asset is None:
            return files.tos_error(403, "AccessDenied", "Request has expired.")
        return files.file_response(asset, simulator.faults)

    return router


def _admin_router() -> APIRouter:
    router = admin.admin_router(
        guard=admin_guard,
        read_json=_json_body,
        invalid=lambda message, param: invalid_parameter(message),
        not_an_object=lambda: invalid_parameter("The JSON body must be an object."),
    )

    @router.post("/tasks/{task_id}/expire")
    async def expire(task_id: str, simulator: SimDep) -> dict[str, Any]:
        task = await simulator.expire(task_id)
        return {"id": task.id, "status": task.status}

    return router


def _error_response(exc: ArkError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def ark_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, ArkError)
        return _error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()))
        return _error_response(invalid_parameter(f"The parameter `{where}` is not valid: {first['msg']}"))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        if exc.status_code == 405:
            return _error_response(ArkError(405, "MethodNotAllowed", f"{request.method} is not allowed here."))
        if exc.status_code == 404:
            return _error_response(ArkError(404, "NotFound", f"No route for {request.url.path[:200]}."))
        return _error_response(ArkError(exc.status_code, "InvalidRequest", str(exc.detail)))

    async def unexpected_error(request: Request, exc: Exception) -> Response:
        return _error_response(server_error(500))

    app.add_exception_handler(ArkError, ark_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, unexpected_error)


def create_seedance_simulator_app(
    settings: SimulatorSettings,
    *,
    files_base_url: str | None = None,
    callback_transport: httpx.AsyncBaseTransport | None = None,
) -> FastAPI:
    """The Seedance (BytePlus ModelArk) simulator as an ASGI app; its background work runs in the lifespan.

    Video URLs point at the request's own host unless `files_base_url` (or `files_base_url` in
    `PATCH /_sim/config`) names another, standing in for TOS. Ark keeps a video URL working 24 h: a
    production-like stack passes `SimulatorSettings(ttl_seconds=86400)`. `callback_transport` delivers the
    callbacks in process (tests); by default they go over the network.
    """
    simulator = SeedanceSimulator(settings, files_base_url=files_base_url, callback_transport=callback_transport)
    app = FastAPI(title="Video Gateway Seedance simulator", lifespan=simulator.lifespan, openapi_url=None)
    app.state.simulator = simulator
    _install_error_handlers(app)
    app.include_router(_api_router(), prefix="/api/v3")
    app.include_router(_admin_router())
    app.include_router(_files_router())
    return app


@contextlib.asynccontextmanager
async def seedance_simulator_running(app: FastAPI) -> AsyncIterator[SeedanceSimulator]:
    """Run the simulator's background work for an app driven without lifespan (httpx `ASGITransport`)."""
    simulator: SeedanceSimulator = app.state.simulator
    async with simulator.running():
        yield simulator
