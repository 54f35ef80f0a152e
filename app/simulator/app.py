"""HTTP surface of the simulator: the `/v1/videos` contract, the `/_sim` admin API and the file host.

The contract: create, list, retrieve, delete, content and remix; and `POST /v1/videos/edits` and
`POST /v1/videos/extensions` (multipart with the source as the `video` file part or the text part
`video[id]`, or JSON with `"video": {"id": ...}`; see `app.simulator.derive`), `POST /v1/videos/characters`
(multipart only: `name` and the `video` file part) and `GET /v1/videos/characters/{id}`. Uploaded videos are
bounded by `derive.MAX_UPLOAD_BYTES` (413 past it).

Routes parse the request, call one `Simulator` operation and return its JSON. Every `/v1` and `/_sim` route
requires `Authorization: Bearer <api_key>`; `/_sim/files/...` instead takes the per-video token that a
content redirect carries (clients drop `Authorization` when a redirect changes host). Errors of any kind,
including FastAPI's own validation and routing errors, are answered in OpenAI's error shape.

Admin API (JSON; all but the expiry are `app.simulator.admin`'s, shared with the Gemini simulator):
- `GET /_sim/faults` → `Faults`; `PUT /_sim/faults` replaces all knobs (missing ones take their defaults);
  `PATCH /_sim/faults` changes only the given knobs.
- `GET /_sim/config` → `OpenAIConfig` (`queue_seconds`, `render_seconds`, `ttl_seconds`, `webhook_url`,
  `blocked_words`, and the account's limits `rate_limit_rpm`, `rate_limit_window_seconds`,
  `max_concurrent_renders`); `PATCH /_sim/config` changes the given fields.
- `POST /_sim/reset` forgets videos, deliveries, stats and faults, and restores the settings' config.
- `GET /_sim/stats` → `{create_requests, videos_created, renders_completed, rate_limited, requests: {route:
  count}}`; `rate_limited` counts the 429s the limits answered (a create, remix, edit or extension past
  `rate_limit_rpm` within `rate_limit_window_seconds`, or past `max_concurrent_renders` videos queued or
  rendering). Edits and extensions count in `videos_created` and `renders_completed` as remixes do;
  `create_requests` counts `POST /v1/videos` only.
- `GET /_sim/webhooks` → `{"object": "list", "data": [delivery...]}`, each delivery `{webhook_id, event_id,
  type, video_id, status, attempts: [{number, at, status_code, error}], body}`.
- `POST /_sim/videos/{id}/expire` makes a completed video's content expire now; returns the `Video`.
- `POST /_sim/finish-renders` `{"over_seconds": S}`: every video in progress completes within the next S
  seconds, evenly spread (a burst on demand); returns `{"released": n}`. `GET /_sim/stats` says how many
  renders are still drawing their files (`renders_pending`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import Message

from app.core.config import SimulatorSettings
from app.simulator import admin, content
from app.simulator.derive import MAX_UPLOAD_BYTES, UploadedVideo, probe_mp4
from app.simulator.errors import SimulatorError, invalid
from app.simulator.lifecycle import take_burst
from app.simulator.runtime import Simulator
from app.simulator.state import Order, list_envelope
from app.simulator.validation import (
    MAX_IMAGE_URL_CHARS,
    check_character_fields,
    check_create_fields,
    check_edit_fields,
    check_extension_fields,
    check_reference_image,
    check_remix_fields,
    decode_data_url,
    parse_json_reference,
)

IMAGE_FETCH_TIMEOUT_SECONDS = 10.0
# The calls that start a paid render: what the account's rate limit counts.
PAID_ROUTES = frozenset({"create_video", "remix_video", "edit_video", "extend_video"})
# Room for the text parts and multipart framing beside an upload of `MAX_UPLOAD_BYTES`.
FORM_OVERHEAD_BYTES = 1024 * 1024
SERVER_ERROR_MESSAGE = "The server had an error while processing your request. Sorry about that!"


def get_simulator(request: Request) -> Simulator:
    simulator: Simulator = request.app.state.simulator
    return simulator


SimDep = Annotated[Simulator, Depends(get_simulator)]


def _check_bearer(request: Request, simulator: Simulator) -> None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise SimulatorError(
            401,
            "You didn't provide an API key. You need to provide your API key in an Authorization header "
            "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
            code=None,
        )
    expected = simulator.settings.api_key.get_secret_value()
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise SimulatorError(401, "Incorrect API key provided.", code="invalid_api_key")


async def api_guard(request: Request, simulator: SimDep) -> None:
    """Auth, lazy start, request counting, the 429/5xx bursts and the rate limit, before any `/v1` route runs."""
    _check_bearer(request, simulator)
    await simulator.ensure_started()
    route_name: str = getattr(request.scope.get("route"), "name", "")
    simulator.stats.count_request(route_name, create=route_name == "create_video")
    faults = simulator.faults
    burst = take_burst(faults, route_name)
    if burst == "rate_limit":
        raise SimulatorError(
            429,
            "Rate limit reached for requests. Please try again later.",
            type="requests",
            code="rate_limit_exceeded",
            headers={"retry-after": str(faults.rate_limit_retry_after_seconds)},
        )
    if burst == "server_error":
        raise SimulatorError(faults.server_error_status, SERVER_ERROR_MESSAGE, type="server_error", code=None)
    if route_name in PAID_ROUTES:
        simulator.admit_paid_request(time.time())


async def admin_guard(request: Request, simulator: SimDep) -> None:
    _check_bearer(request, simulator)
    await simulator.ensure_started()


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def _upload_too_large(max_file_bytes: int) -> SimulatorError:
    return SimulatorError(
        413,
        f"The uploaded video is too large: at most {max_file_bytes / (1024 * 1024):g} MiB is accepted.",
        param="video",
        code="file_too_large",
    )


def _bounded(request: Request, max_file_bytes: int) -> Request:
    """The request with a body that answers 413 once it is longer than a file of `max_file_bytes` and the other
    fields can make it, before it is all read (a declared `Content-Length` at once; a chunked body as it
    arrives), so an oversized upload is neither buffered nor spooled to disk whole."""
    max_bytes = max_file_bytes + FORM_OVERHEAD_BYTES
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise _upload_too_large(max_file_bytes)
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise _upload_too_large(max_file_bytes)
        return message

    return Request(request.scope, receive)


async def _read_fields(
    request: Request, *, file_field: str = "input_reference", max_file_bytes: int | None = None
) -> tuple[dict[str, object], bytes | None]:
    """The request's fields (JSON object or multipart text parts) and the bytes of the `file_field` file part,
    if any; with `max_file_bytes`, a bigger body or file is refused with 413."""
    if max_file_bytes is not None:
        request = _bounded(request, max_file_bytes)
    content_type = _content_type(request)
    if content_type == "application/json":
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise invalid(
                "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
                "using your HTTP library correctly.)",
                code=None,
            ) from exc
        if not isinstance(body, dict):
            raise invalid("The JSON body must be an object.", code="invalid_type")
        return body, None
    if content_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        fields: dict[str, object] = {}
        file_bytes: bytes | None = None
        async with request.form() as form:
            for name, value in form.multi_items():
                if isinstance(value, UploadFile):
                    if name != file_field:
                        raise invalid(f"Unexpected file part '{name}'.", param=name, code="invalid_type")
                    if max_file_bytes is not None and (value.size or 0) > max_file_bytes:
                        raise _upload_too_large(max_file_bytes)
                    file_bytes = await value.read()
                    fields[name] = None
                else:
                    fields[name] = value
        return fields, file_bytes
    raise invalid(
        f"Unsupported content type '{content_type}'; send application/json or multipart/form-data.",
        code="unsupported_content_type",
    )


async def _fetch_image(url: str) -> bytes:
    if url.startswith("data:"):
        return decode_data_url(url)
    try:
        async with httpx.AsyncClient(timeout=IMAGE_FETCH_TIMEOUT_SECONDS, follow_redirects=True) as client:
            response = await client.get(url)
    except httpx.HTTPError as exc:
        raise invalid(
            f"Could not download input_reference.image_url: {exc}", param="input_reference.image_url"
        ) from exc
    if response.status_code != 200 or len(response.content) > MAX_IMAGE_URL_CHARS:
        raise invalid(
            f"Could not download input_reference.image_url (HTTP {response.status_code}).",
            param="input_reference.image_url",
        )
    return response.content


def _api_router() -> APIRouter:
    router = APIRouter(dependencies=[Depends(api_guard)])

    @router.post("/videos", name="create_video")
    async def create_video(request: Request, simulator: SimDep) -> dict[str, Any]:
        fields, file_bytes = await _read_fields(request)
        reference_field = fields.get("input_reference")
        params = check_create_fields({**fields, "input_reference": None})
        image: bytes | None = file_bytes
        # JSON `"input_reference": null` means no reference, as the SDK's `omit` would.
        if reference_field is not None and file_bytes is None:
            if isinstance(reference_field, str):  # a multipart text part where a file was expected
                raise invalid(
                    "Invalid 'input_reference': expected a file part.",
                    param="input_reference",
                    code="invalid_type",
                )
            image = await _fetch_image(parse_json_reference(reference_field))
        if image is not None:
            await asyncio.to_thread(check_reference_image, image, params.size)
        record = simulator.create(params, reference_image=image)
        return record.as_video(_now())

    # Before the `/videos/{video_id}/...` routes, which `/videos/characters/content` would match too.
    @router.post("/videos/edits", name="edit_video")
    async def edit_video(request: Request, simulator: SimDep) -> dict[str, Any]:
        fields, file_bytes = await _read_fields(request, file_field="video", max_file_bytes=MAX_UPLOAD_BYTES)
        params = check_edit_fields(fields, has_file=file_bytes is not None)
        upload = await _probe_upload(file_bytes)
        return simulator.derive("edit", params, upload).as_video(_now())

    @router.post("/videos/extensions", name="extend_video")
    async def extend_video(request: Request, simulator: SimDep) -> dict[str, Any]:
        fields, file_bytes = await _read_fields(request, file_field="video", max_file_bytes=MAX_UPLOAD_BYTES)
        params = check_extension_fields(fields, has_file=file_bytes is not None)
        upload = await _probe_upload(file_bytes)
        return simulator.derive("extension", params, upload).as_video(_now())

    @router.post("/videos/characters", name="create_character")
    async def create_character(request: Request, simulator: SimDep) -> dict[str, Any]:
        if _content_type(request) != "multipart/form-data":
            raise invalid(
                "Characters are created from an uploaded video: send multipart/form-data with 'name' and 'video'.",
                code="unsupported_content_type",
            )
        fields, file_bytes = await _read_fields(request, file_field="video", max_file_bytes=MAX_UPLOAD_BYTES)
        name = check_character_fields(fields, has_file=file_bytes is not None)
        await _probe_upload(file_bytes)
        return simulator.create_character(name).as_json()

    @router.get("/videos/characters/{character_id}", name="retrieve_character")
    async def retrieve_character(character_id: str, simulator: SimDep) -> dict[str, Any]:
        return simulator.characters.get(character_id).as_json()

    @router.get("/videos", name="list_videos")
    async def list_videos(
        simulator: SimDep,
        after: str | None = None,
        limit: Annotated[int, Query(ge=0, le=100)] = 20,
        order: Order = "desc",
    ) -> dict[str, Any]:
        records, has_more = simulator.store.page(after=after, limit=limit, order=order)
        return list_envelope(records, has_more, _now())

    @router.get("/videos/{video_id}", name="retrieve_video")
    async def retrieve_video(video_id: str, simulator: SimDep) -> dict[str, Any]:
        return simulator.store.get(video_id).as_video(_now())

    @router.delete("/videos/{video_id}", name="delete_video")
    async def delete_video(video_id: str, simulator: SimDep) -> dict[str, Any]:
        record = await simulator.delete(video_id)
        return {"id": record.id, "object": "video.deleted", "deleted": True}

    @router.get("/videos/{video_id}/content", name="download_content")
    async def download_content(video_id: str, request: Request, simulator: SimDep, variant: str = "video") -> Response:
        return _serve(request, simulator, video_id, variant, redirected=False)

    @router.post("/videos/{video_id}/remix", name="remix_video")
    async def remix_video(video_id: str, request: Request, simulator: SimDep) -> dict[str, Any]:
        fields, file_bytes = await _read_fields(request)
        if file_bytes is not None:
            raise invalid("Remix takes no file parts.", param="input_reference", code="unknown_parameter")
        prompt = check_remix_fields(fields)
        record = simulator.remix(video_id, prompt)
        return record.as_video(_now())

    return router


async def _probe_upload(file_bytes: bytes | None) -> UploadedVideo | None:
    """Check an uploaded source video off the event loop (decoding it is CPU work)."""
    if file_bytes is None:
        return None
    return await asyncio.to_thread(probe_mp4, file_bytes)


def _serve(request: Request, simulator: Simulator, video_id: str, variant: str, *, redirected: bool) -> Response:
    chosen = content.check_variant(variant)
    record = simulator.store.get(video_id)
    content.check_downloadable(record, _now())
    asset = content.locate_asset(record, simulator.asset_directory(record), chosen)
    return content.content_response(request, record, asset, chosen, simulator.faults, redirected=redirected)


def _admin_router() -> APIRouter:
    router = admin.admin_router(
        guard=admin_guard,
        read_json=_json_body,
        invalid=lambda message, param: invalid(message, param=param),
        not_an_object=lambda: invalid("The JSON body must be an object.", code="invalid_type"),
    )

    @router.post("/videos/{video_id}/expire")
    async def expire(video_id: str, simulator: SimDep) -> dict[str, Any]:
        return simulator.expire(video_id).as_video(_now())

    return router


def _files_router() -> APIRouter:
    router = APIRouter(prefix="/_sim")

    @router.get("/files/{video_id}/{variant}", name="serve_file")
    async def serve_file(
        video_id: str,
        variant: Literal["video", "thumbnail", "spritesheet"],
        token: str,
        request: Request,
        simulator: SimDep,
    ) -> Response:
        record = simulator.store.get(video_id)
        if not hmac.compare_digest(token.encode(), record.download_token.encode()):
            raise SimulatorError(403, "Invalid download token.", type="invalid_request_error", param="token")
        return _serve(request, simulator, video_id, variant, redirected=True)

    return router


async def _json_body(request: Request) -> Any:
    try:
        return await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise invalid("We could not parse the JSON body of your request.", code=None) from exc


def _now() -> float:
    return time.time()


def _error_response(exc: SimulatorError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status_code, headers=exc.headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def simulator_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimulatorError)
        return _error_response(exc)

    async def validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        first = exc.errors()[0]
        param = str(first["loc"][-1]) if first.get("loc") else None
        return _error_response(invalid(f"Invalid '{param}': {first['msg']}", param=param))

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        message = (
            f"Invalid URL ({request.method} {request.url.path})" if exc.status_code in (404, 405) else str(exc.detail)
        )
        return _error_response(SimulatorError(exc.status_code, message, code=None))

    app.add_exception_handler(SimulatorError, simulator_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)


def create_simulator_app(settings: SimulatorSettings) -> FastAPI:
    """The simulator as an ASGI app; its background work runs in the lifespan (or see `simulator_running`)."""
    simulator = Simulator(settings)
    app = FastAPI(title="Video Gateway upstream simulator", lifespan=simulator.lifespan, openapi_url=None)
    app.state.simulator = simulator
    _install_error_handlers(app)
    app.include_router(_api_router(), prefix="/v1")
    app.include_router(_admin_router())
    app.include_router(_files_router())
    return app


@contextlib.asynccontextmanager
async def simulator_running(app: FastAPI) -> AsyncIterator[Simulator]:
    """Run the simulator's background work for an app driven without lifespan (httpx `ASGITransport`)."""
    simulator: Simulator = app.state.simulator
    async with simulator.running():
        yield simulator
