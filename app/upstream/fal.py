"""The fal.ai adapter (`kind: fal`): fal's queue API behind OpenAI's `/v1/videos` contract.

One profile reaches many vendors' models: the gateway's model name is fal's endpoint id (`fal-ai/veo3.1`,
`fal-ai/kling-video/v2.5-turbo/pro/text-to-video`, ...). Each endpoint belongs to a FAMILY, matched by the
longest listed prefix (whole path segments), whose input schema differs from the others'; the family's table
says how `seconds` becomes its duration field (Veo `"8s"`, Kling `"5"`, Wan a frame count at 16 fps, ...) and
`size` its `aspect_ratio` (+ `resolution` where it takes one). What the table cannot map is a 400 naming the
parameter, before any call; an endpoint of no listed family is a 400 naming `model`.

Mapping (docs/providers.md has the table):
- create → `POST {base_url}/{endpoint id}[?fal_webhook=<our receiver>]` with `Authorization: Key <key>` and the
  family's JSON input; the reference image goes as `image_url`, a base64 `data:` URI, and only to an
  image-to-video endpoint. fal answers `request_id`, which alone cannot be polled: the status URL uses the
  endpoint's first two path segments (the "app"), so our upstream id is `{owner}/{app}:{request_id}`.
- retrieve → `GET {base}/{owner}/{app}/requests/{id}/status`: `IN_QUEUE` → `queued`, `IN_PROGRESS` →
  `in_progress`, `COMPLETED` with `error` → `failed`, `COMPLETED` without → the result
  `GET {base}/{owner}/{app}/requests/{id}`: a `video.url` → `completed`; the model's refusal there (422
  `{"detail": [...]}`) → `failed`; content-policy errors → `moderation_blocked` with fal's reason. Never
  `completed` without a URL.
- content → the result's `video.url` on fal's CDN (`*.fal.media`, or an operator-listed host): fetched
  without the key, which goes only to the queue host. Only the video is served; the archive derives the rest.
- delete → `PUT .../requests/{id}/cancel` while the render is still queued; otherwise nothing upstream (fal has
  no delete). Remix → 400 `unsupported_by_provider`. No list (`recent_videos` is None).

`fetch_key_set` fetches fal's webhook JWKS for the receiver (app/webhooks/fal.py), so HTTP to fal stays here.

fal's answers carry no timestamps, so `completed_at` is when the gateway sees the result and `expires_at` that
plus the profile's `retention_seconds`, else 24 h: fal's default media retention is undocumented, and a short
guess makes the archive hurry rather than miss the file.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, Final, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from app.core.config import UpstreamSettings
from app.core.errors import GatewayError, InvalidRequest, ResourceNotFound, UpstreamError
from app.upstream.capabilities import SERVED_VARIANTS, ModelCapabilities, check_create, check_remix
from app.upstream.client import MAX_REDIRECTS, CallKind, UpstreamClient, UpstreamRejected
from app.upstream.provider import RendersOnlyFromPrompts
from app.upstream.reference import SubmissionReferences
from app.upstream.schemas import CreateVideoCommand, UpstreamVideo, UpstreamVideoError

PROVIDER: Final = "fal.ai"
# fal documents no default lifetime for generated media ("at least 7 days" is an unverified snippet): a day
# from when we see the result, unless the profile's `retention_seconds` says otherwise.
DEFAULT_RETENTION_SECONDS: Final = 24 * 3600.0
# fal's media CDN (`v3.fal.media`, `v3b.fal.media`, ...): public URLs, never sent the key.
CDN_DOMAIN: Final = "fal.media"
MAX_REASON_CHARS: Final = 1000
# fal's error types (the `type` of a `detail` entry, `error_type`, or the `x-fal-error-type` header) that
# mean a content checker refused the input or the output.
MODERATION_TYPES: Final = frozenset({"content_policy_violation", "nsfw_content_detected", "safety_check_failed"})

# Endpoint ids: lowercase path segments. The first two (the "app") are ≤ 48 characters each, so that
# `{app}:{request id}` stays within the 200 characters our `upstream_id` column holds.
_SEGMENT = r"[a-z0-9][a-z0-9._-]{0,47}"
ENDPOINT_ID: Final = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT}){{1,5}}")
# fal's request ids are UUIDs; anything else is never put into a URL path.
REQUEST_ID: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
UPSTREAM_ID: Final = re.compile(rf"(?P<app>{_SEGMENT}/{_SEGMENT}):(?P<request_id>[A-Za-z0-9][A-Za-z0-9_-]{{0,99}})")

Mode = Literal["text", "image"]
# The last segment of an endpoint that takes something other than a prompt (and optionally a first frame).
_OTHER_TASK = re.compile(r".*(?:-to-video|video-to-.*|extend.*|edit.*|remix.*|reframe.*|lipsync.*)")

# Sizes by aspect ratio and resolution tier, for the families' tables below.
_16_9: Final = {"480p": "854x480", "540p": "960x540", "720p": "1280x720", "1080p": "1920x1080"}
_9_16: Final = {"480p": "480x854", "540p": "540x960", "720p": "720x1280", "1080p": "1080x1920"}


def _sizes(resolutions: tuple[str, ...], *, send_resolution: bool = True) -> dict[str, tuple[str, str | None]]:
    """size → (aspect_ratio, resolution or None) for 16:9 and 9:16 at each tier."""
    sizes: dict[str, tuple[str, str | None]] = {}
    for tier in resolutions:
        sizes[_16_9[tier]] = ("16:9", tier if send_resolution else None)
        sizes[_9_16[tier]] = ("9:16", tier if send_resolution else None)
    return sizes


@dataclass(frozen=True)
class Family:
    """One family of fal endpoints that share an input schema."""

    name: str  # in messages: "Kling 2.5 Turbo Pro on fal.ai"
    prefixes: tuple[str, ...]
    # Our `seconds` → the value of `duration_field` (None: the endpoint renders only that length; nothing sent).
    seconds: Mapping[str, str | int | None]
    # Our `size` → (`aspect_ratio`, `resolution`); None: the field is not sent (the family has no such input).
    sizes: Mapping[str, tuple[str | None, str | None]]
    duration_field: str = "duration"
    seconds_by_size: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # Sent with every create, so the mapping never rests on a default of fal's (Wan's frame rate).
    fixed: Mapping[str, Any] = field(default_factory=dict)
    # Whether the family's image-to-video endpoints take `aspect_ratio` / `resolution`. Where they do not, the
    # video takes the image's shape, so the image's aspect ratio must match the requested size's.
    image_takes_aspect_ratio: bool = True
    image_takes_resolution: bool = True


FAMILIES: Final[tuple[Family, ...]] = (
    Family(
        name="Veo 3.1 on fal.ai",
        prefixes=("fal-ai/veo3.1", "fal-ai/veo3"),
        seconds={"4": "4s", "6": "6s", "8": "8s"},
        sizes=_sizes(("720p", "1080p")),
        # Google's limit for Veo, which fal passes the render to: 1080p renders only 8 s.
        seconds_by_size={"1920x1080": ("8",), "1080x1920": ("8",)},
    ),
    Family(
        name="Kling 2.5 Turbo Pro on fal.ai",
        prefixes=("fal-ai/kling-video/v2.5-turbo/pro",),
        seconds={"5": "5", "10": "10"},
        # Pro renders 1080p; Kling takes no resolution input.
        sizes={**_sizes(("1080p",), send_resolution=False), "1080x1080": ("1:1", None)},
        image_takes_aspect_ratio=False,
        image_takes_resolution=False,
    ),
    Family(
        name="Kling 2.5 Turbo Standard on fal.ai",
        prefixes=("fal-ai/kling-video/v2.5-turbo/standard",),
        seconds={"5": "5", "10": "10"},
        sizes={**_sizes(("720p",), send_resolution=False), "720x720": ("1:1", None)},
        image_takes_aspect_ratio=False,
        image_takes_resolution=False,
    ),
    Family(
        name="MiniMax Hailuo-02 Standard on fal.ai",
        prefixes=("fal-ai/minimax/hailuo-02/standard",),
        seconds={"6": "6", "10": "10"},
        # 768P (1366x768, 16:9) only; no aspect-ratio or resolution input for text-to-video.
        sizes={"1366x768": (None, None)},
        image_takes_aspect_ratio=False,
        image_takes_resolution=False,
    ),
    Family(
        name="MiniMax Hailuo-02 Pro on fal.ai",
        prefixes=("fal-ai/minimax/hailuo-02/pro",),
        # 1080P renders 6 s only, and the endpoint has no duration input.
        seconds={"6": None},
        sizes={"1920x1080": (None, None)},
        image_takes_aspect_ratio=False,
        image_takes_resolution=False,
    ),
    Family(
        name="Seedance 1.0 on fal.ai",
        prefixes=("fal-ai/bytedance/seedance/v1",),
        seconds={"5": "5", "10": "10"},
        sizes=_sizes(("480p", "720p", "1080p")),
        image_takes_aspect_ratio=False,
    ),
    Family(
        name="Wan 2.2 A14B on fal.ai",
        prefixes=("fal-ai/wan/v2.2-a14b",),
        # Wan counts frames: 4n+1 at the frame rate we send (81 frames at 16 fps is its 5 s default).
        seconds={"5": 81, "10": 161},
        duration_field="num_frames",
        fixed={"frames_per_second": 16},
        sizes={"832x480": ("16:9", "480p"), "480x832": ("9:16", "480p"), **_sizes(("720p",))},
        image_takes_aspect_ratio=False,
    ),
    Family(
        name="Luma Ray 2 on fal.ai",
        prefixes=("fal-ai/luma-dream-machine/ray-2", "fal-ai/luma-dream-machine/ray-2-flash"),
        seconds={"5": "5s", "9": "9s"},
        sizes=_sizes(("540p", "720p", "1080p")),
    ),
)


@dataclass(frozen=True)
class Endpoint:
    """A model name understood: its family, and whether it renders from a prompt or from a first frame."""

    id: str
    family: Family
    mode: Mode

    @property
    def app(self) -> str:
        """What fal's status and result URLs use: the endpoint's first two path segments."""
        return app_path(self.id)

    @property
    def image_endpoint(self) -> str:
        """The image-to-video endpoint of a text endpoint (for a refusal's message)."""
        head, _, last = self.id.rpartition("/")
        return f"{head}/image-to-video" if last == "text-to-video" else f"{self.id}/image-to-video"


def app_path(endpoint_id: str) -> str:
    return "/".join(endpoint_id.split("/")[:2])


def upstream_id_of(app: str, request_id: str) -> str:
    """Our upstream id for a fal request: `{owner}/{app}:{request_id}`."""
    return f"{app}:{request_id}"


def parse_upstream_id(upstream_id: str) -> tuple[str, str]:
    """(app, request id) of an upstream id; `ResourceNotFound` unless it has exactly our form."""
    match = UPSTREAM_ID.fullmatch(upstream_id)
    if match is None:
        raise ResourceNotFound("Not a fal request id.", code="not_found")
    return match["app"], match["request_id"]


def upstream_ids_for_request(request_id: str, models: list[str]) -> list[str]:
    """The upstream ids a fal request id can have in a profile serving `models` (one per app).

    fal's webhook names the request but not the endpoint; with these the receiver can look the video up
    exactly (`upstream_id IN (...)`, the unique index on (profile, upstream_id)).
    """
    if not REQUEST_ID.fullmatch(request_id):
        return []
    apps = dict.fromkeys(app_path(model) for model in models if ENDPOINT_ID.fullmatch(model))
    return [upstream_id_of(app, request_id) for app in apps]


def resolve(model: str) -> Endpoint:
    """The endpoint `model` names; a 400 naming `model` when no family's table covers it."""
    if not ENDPOINT_ID.fullmatch(model):
        raise _unknown_model(model, "it is not a fal endpoint id")
    family = _family_of(model)
    if family is None:
        raise _unknown_model(model, "its model family is not one this gateway can map")
    last = model.rsplit("/", 1)[-1]
    if last == "image-to-video":
        return Endpoint(model, family, "image")
    if last == "text-to-video" or not _OTHER_TASK.fullmatch(last):
        return Endpoint(model, family, "text")
    raise _unknown_model(model, f"its task ('{last}') takes inputs other than a prompt and a first frame")


def _family_of(model: str) -> Family | None:
    best: tuple[int, Family] | None = None
    for family in FAMILIES:
        for prefix in family.prefixes:
            if (model == prefix or model.startswith(prefix + "/")) and (best is None or len(prefix) > best[0]):
                best = (len(prefix), family)
    return None if best is None else best[1]


def _unknown_model(model: str, why: str) -> InvalidRequest:
    families = ", ".join(sorted({prefix for family in FAMILIES for prefix in family.prefixes}))
    return InvalidRequest(
        f"Model '{model[:100]}' cannot be rendered through fal.ai by this gateway: {why}. "
        f"Endpoints of these families are mapped: {families}.",
        param="model",
        code="invalid_value",
    )


def fal_error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """fal's errors: `{"detail": "text" | [{"loc", "msg", "type", ...}]}` and `x-fal-error-type`.

    The message is ours, quoting fal's `msg` (never the `input` it echoes); the code is fal's error type,
    with content-policy types made `moderation_blocked`.
    """
    message, error_type = _detail_of(response)
    error_type = response.headers.get("x-fal-error-type") or error_type
    code = _code_of(error_type)
    text = f"fal.ai refused the request: {message}" if message else f"fal.ai answered HTTP {response.status_code}."
    return _reason(text), None, code


def _detail_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """(fal's message, fal's error type) from an error answer's body, each None when absent."""
    try:
        payload = response.json()
    except ValueError:
        return None, None
    return _detail_fields(payload)


def _detail_fields(payload: object) -> tuple[str | None, str | None]:
    if not isinstance(payload, dict):
        return None, None
    detail = payload.get("detail")
    error_type = payload.get("error_type") if isinstance(payload.get("error_type"), str) else None
    if isinstance(detail, str) and detail:
        return detail, error_type
    if isinstance(detail, list) and detail and isinstance(detail[0], dict):
        first = detail[0]
        where = first.get("loc")
        location = ".".join(str(part) for part in where if part != "body") if isinstance(where, list) else ""
        msg = str(first.get("msg") or "invalid input")
        kind = first.get("type")
        return (f"{location}: {msg}" if location else msg), error_type or (kind if isinstance(kind, str) else None)
    return None, error_type


def _code_of(error_type: str | None) -> str | None:
    if not error_type:
        return None
    if error_type in MODERATION_TYPES:
        return "moderation_blocked"
    # Bounded and printable: it becomes a stored error code.
    return re.sub(r"[^a-z0-9_]", "_", error_type.lower())[:64] or None


def _reason(value: object) -> str:
    return str(value)[:MAX_REASON_CHARS]


class FalAdapter(RendersOnlyFromPrompts):
    """One per `kind: fal` profile; sends through an `UpstreamClient` with fal's key and error envelope."""

    kind = "fal"
    served_variants = SERVED_VARIANTS["fal"]

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        profile: str,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_http_redirects: bool = False,
    ) -> None:
        self.profile = profile
        self._retention = settings.retention_seconds or DEFAULT_RETENTION_SECONDS
        self._webhook_url = settings.webhook_url
        self._references = SubmissionReferences(settings.api_key)
        self._file_hosts = frozenset(host.lower() for host in settings.content_redirect_hosts)
        self._allow_http = allow_http_redirects
        self._http = UpstreamClient(
            settings,
            transport=transport,
            allow_http_redirects=allow_http_redirects,
            profile=profile,
            auth_headers={"authorization": f"Key {settings.api_key.get_secret_value()}"},
            error_fields=fal_error_fields,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----- what each model takes ----------------------------------------------------------------

    def capabilities(self, model: str) -> ModelCapabilities:
        endpoint = resolve(model)
        family = endpoint.family
        return ModelCapabilities(
            provider=family.name,
            seconds=tuple(family.seconds),
            sizes=tuple(family.sizes),
            seconds_by_size=family.seconds_by_size,
            # An image-to-video endpoint takes any image; where the family sizes the video from the image,
            # `check_create` below holds the image's aspect ratio to the size's.
            image_must_match_size=False,
            # The gateway fetches a link itself and sends the bytes (as a data: URI), so links are fine where
            # an image is taken at all.
            accepts_image_url=endpoint.mode == "image",
            remix=False,
        )

    def check_create(self, command: CreateVideoCommand) -> None:
        endpoint = resolve(command.model)
        has_image = command.image is not None or command.image_url is not None
        if endpoint.mode == "text" and has_image:
            raise InvalidRequest(
                f"Model '{command.model}' is a text-to-video endpoint; it takes no 'input_reference'. Send the "
                f"image to the family's image-to-video endpoint (e.g. '{endpoint.image_endpoint}') instead.",
                param="input_reference",
                code="unsupported_by_provider",
            )
        if endpoint.mode == "image" and not has_image:
            raise InvalidRequest(
                f"Model '{command.model}' is an image-to-video endpoint; it needs an 'input_reference' image.",
                param="input_reference",
                code="missing_required_parameter",
            )
        check_create(command, self.capabilities(command.model))
        image = command.image
        family = endpoint.family
        if image is not None and not family.image_takes_aspect_ratio and image.width and image.height:
            width, height = (int(part) for part in command.size.split("x"))
            if abs(image.width / image.height - width / height) > 0.02 * (width / height):
                raise InvalidRequest(
                    f"{family.name} shapes the video like its first frame: 'input_reference' is "
                    f"{image.width}x{image.height}, which is not the aspect ratio of size {command.size}.",
                    param="input_reference",
                    code="invalid_image_size",
                )

    def check_remix(self, model: str) -> None:
        check_remix(model, self.capabilities(model))

    def unavailable(self) -> GatewayError | None:
        return self._http.unavailable()

    # ----- the contract -------------------------------------------------------------------------

    async def create_video(self, command: CreateVideoCommand) -> UpstreamVideo:
        self.check_create(command)  # cheap, and the body below relies on every value being mapped
        endpoint = resolve(command.model)
        body = self._input_of(endpoint, command)
        params = (
            {"fal_webhook": self._references.callback_url(self._webhook_url, command.reference)}
            if self._webhook_url
            else None
        )
        response = await self._http.send("POST", endpoint.id, kind=CallKind.PAID, json=body, params=params)
        request_id = _payload(response).get("request_id")
        if not isinstance(request_id, str) or not REQUEST_ID.fullmatch(request_id):
            # The render may have started: without its id we cannot follow it. Never re-sent.
            raise UpstreamError(
                "Upstream accepted the render but answered without a usable request id.",
                code="upstream_bad_response",
                headers={"x-should-retry": "false"},
            )
        return UpstreamVideo(
            id=upstream_id_of(endpoint.app, request_id),
            model=command.model,
            status="queued",
            progress=0,
            created_at=int(time.time()),
            prompt=command.prompt,
            size=command.size,
            seconds=command.seconds,
        )

    async def remix_video(self, upstream_id: str, *, prompt: str) -> UpstreamVideo:
        raise UpstreamError(f"{PROVIDER} cannot remix a video.", code="unsupported_by_provider")

    async def retrieve_video(self, upstream_id: str) -> UpstreamVideo:
        app, request_id = parse_upstream_id(upstream_id)
        status = await self._status(app, request_id)
        # size/seconds/prompt are not echoed by fal; the gateway keeps its own from the create.
        # fal's answers carry no dates: `created_at` is a placeholder the gateway never takes over its own.
        fields: dict[str, Any] = {"id": upstream_id, "model": app, "size": "", "seconds": ""}
        fields["created_at"] = int(time.time())
        state = status.get("status")
        if state == "IN_QUEUE":
            return UpstreamVideo(status="queued", progress=0, **fields)
        if state == "IN_PROGRESS":
            return UpstreamVideo(status="in_progress", progress=None, **fields)
        if state != "COMPLETED":
            raise UpstreamError("Upstream answered with an unknown request status.", code="upstream_bad_response")
        failure = _status_failure(status)
        if failure is not None:
            return UpstreamVideo(status="failed", progress=None, error=failure, **fields)
        try:
            result = await self._result(app, request_id)
        except UpstreamRejected as exc:
            # fal answers the result of a render the model refused with 422 `{"detail": [...]}` (its input
            # checks, its content checker). Another refusal proves nothing about the render: asked again later.
            if exc.status_code != 422:
                raise
            error = UpstreamVideoError(code=exc.code or "upstream_unprocessable", message=exc.message)
            return UpstreamVideo(status="failed", progress=None, error=error, **fields)
        if _video_url(result) is None:
            return UpstreamVideo(
                status="failed",
                progress=None,
                error=UpstreamVideoError(code="upstream_no_output", message="Upstream finished without a video."),
                **fields,
            )
        now = int(time.time())
        return UpstreamVideo(
            status="completed", progress=100, completed_at=now, expires_at=int(now + self._retention), **fields
        )

    async def delete_video(self, upstream_id: str) -> None:
        """Cancel a render still in fal's queue (nothing is paid for it then); otherwise nothing upstream."""
        app, request_id = parse_upstream_id(upstream_id)
        if (await self._status(app, request_id)).get("status") != "IN_QUEUE":
            return  # fal has no delete, and cannot stop a render once it runs: ours goes, theirs expires.
        # A refusal means it left the queue meanwhile: too late to cancel, nothing else to do.
        with contextlib.suppress(UpstreamRejected):
            await self._http.send("PUT", f"{app}/requests/{request_id}/cancel", kind=CallKind.READ)

    def called_back_id(self, delivered_id: str, *, model: str) -> str:
        return upstream_id_of(app_path(model), delivered_id)

    async def recent_videos(self, *, created_since: int) -> list[UpstreamVideo] | None:
        # fal's queue cannot be listed: a create cut off before its request id came back cannot be found again.
        return None

    @asynccontextmanager
    async def stream_content(self, upstream_id: str, *, variant: str) -> AsyncIterator[httpx.Response]:
        if variant not in self.served_variants:
            raise ResourceNotFound(
                f"The {variant} of this video is made by the gateway from the archived MP4; it is available "
                "once the video is archived.",
                param="variant",
                code="variant_not_ready",
            )
        app, request_id = parse_upstream_id(upstream_id)
        if (await self._status(app, request_id)).get("status") != "COMPLETED":
            raise ResourceNotFound("Upstream has no video for this request yet.", code="not_found")
        try:
            url = _video_url(await self._result(app, request_id))
        except UpstreamRejected:
            url = None
        if url is None:
            raise ResourceNotFound("Upstream has no video for this request.", code="not_found")
        for _hop in range(MAX_REDIRECTS + 1):
            self._check_file_url(url)
            # Public CDN URLs: the key stays with the queue host.
            try:
                response = await self._http.send(
                    "GET", url, kind=CallKind.READ, stream=True, without_auth=True, headers={"accept": "video/mp4"}
                )
            except (ResourceNotFound, UpstreamRejected) as exc:
                if isinstance(exc, UpstreamRejected) and exc.status_code not in (404, 410):
                    raise
                # The result still names the file, but fal's CDN deleted it (its media lifetime passed): the
                # queue cannot tell, so this is the only word that the video is gone upstream.
                raise ResourceNotFound(
                    "fal's CDN no longer has this video's file (its media lifetime passed).",
                    code="upstream_content_expired",
                ) from None
            if response.is_redirect and "location" in response.headers:
                await response.aclose()
                url = urljoin(url, response.headers["location"])
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise UpstreamError("Upstream redirected content more than 3 times.", code="too_many_redirects")

    # ----- internals ----------------------------------------------------------------------------

    def _input_of(self, endpoint: Endpoint, command: CreateVideoCommand) -> dict[str, Any]:
        family = endpoint.family
        body: dict[str, Any] = {"prompt": command.prompt, **family.fixed}
        duration = family.seconds[command.seconds]
        if duration is not None:
            body[family.duration_field] = duration
        aspect_ratio, resolution = family.sizes[command.size]
        image_mode = endpoint.mode == "image"
        if aspect_ratio is not None and (not image_mode or family.image_takes_aspect_ratio):
            body["aspect_ratio"] = aspect_ratio
        if resolution is not None and (not image_mode or family.image_takes_resolution):
            body["resolution"] = resolution
        if image_mode:
            if command.image is None:
                # The video service fetches a link before the create; an image-to-video render needs the bytes.
                raise InvalidRequest(
                    f"Model '{command.model}' needs the 'input_reference' image itself.", param="input_reference"
                )
            encoded = base64.b64encode(command.image.data).decode("ascii")
            body["image_url"] = f"data:{command.image.content_type};base64,{encoded}"
        return body

    async def _status(self, app: str, request_id: str) -> dict[str, Any]:
        return _payload(await self._http.send("GET", f"{app}/requests/{request_id}/status", kind=CallKind.READ))

    async def _result(self, app: str, request_id: str) -> dict[str, Any]:
        return _payload(await self._http.send("GET", f"{app}/requests/{request_id}", kind=CallKind.READ))

    def _check_file_url(self, url: str) -> None:
        target = urlsplit(url)
        host = (target.hostname or "").lower()
        schemes = {"https", "http"} if self._allow_http else {"https"}
        on_cdn = host.endswith("." + CDN_DOMAIN)
        if target.scheme not in schemes or not (on_cdn or host in self._file_hosts) or target.username:
            raise UpstreamError(
                f"Upstream named a video file at a location that is not allowed ({target.scheme}://{host}); "
                "not fetched.",
                code="redirect_not_allowed",
            )


class KeySetUnavailable(Exception):
    """fal's webhook key set could not be fetched (network, status, size)."""


# The transport a caller may pass to `fetch_key_set` (tests); the webhook receiver names it without httpx.
Transport = httpx.AsyncBaseTransport


async def fetch_key_set(
    url: str, *, max_bytes: int, timeout_seconds: float, transport: Transport | None = None
) -> bytes:
    """The body of fal's JWKS at `url` (fetched here: HTTP to fal stays in this package), bounded in bytes and
    time; no redirect is followed. `KeySetUnavailable` on any failure, with a reason for the log."""
    try:
        # A bound on the whole fetch, not per read: a trickling answer cannot hold the receiver's key lock.
        async with (
            asyncio.timeout(timeout_seconds),
            httpx.AsyncClient(timeout=timeout_seconds, follow_redirects=False, transport=transport) as client,
            client.stream("GET", url, headers={"accept": "application/json"}) as response,
        ):
            if response.status_code != 200:
                raise KeySetUnavailable(f"HTTP {response.status_code}")
            body = bytearray()
            async for chunk in response.aiter_bytes():
                body += chunk
                if len(body) > max_bytes:
                    raise KeySetUnavailable(f"larger than {max_bytes} bytes")
    except (httpx.HTTPError, TimeoutError) as exc:
        raise KeySetUnavailable(type(exc).__name__) from None
    return bytes(body)


def _payload(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamError("Upstream answered with something that is not a JSON object.", code="upstream_bad_response")
    return payload


def _status_failure(status: Mapping[str, Any]) -> UpstreamVideoError | None:
    """The failure a `COMPLETED` status reports in `error` / `error_type`, if any."""
    error = status.get("error")
    error_type = status.get("error_type") if isinstance(status.get("error_type"), str) else None
    if not error and not error_type:
        return None
    if isinstance(error, dict | list):
        message, detail_type = _detail_fields({"detail": error})
        error_type = error_type or detail_type
    else:
        message = str(error) if error else None
    code = _code_of(error_type) or "upstream_failed"
    default = "The video was blocked by the provider's content checker." if code == "moderation_blocked" else None
    return UpstreamVideoError(code=code, message=_reason(message or default or "The render failed upstream."))


def _video_url(result: Mapping[str, Any]) -> str | None:
    video = result.get("video")
    url = video.get("url") if isinstance(video, dict) else None
    return url if isinstance(url, str) and url else None
