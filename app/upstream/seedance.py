"""The Seedance adapter (`kind: seedance`): ByteDance Seedance on BytePlus ModelArk (or Volcengine Ark) behind
OpenAI's `/v1/videos` contract.

Mapping (docs/providers.md has the table); `base_url` is Ark's API root, e.g.
`https://ark.ap-southeast.bytepluses.com/api/v3`:
- create → `POST /contents/generations/tasks` with `Authorization: Bearer KEY`: `prompt` → a `text` content
  item; an `input_reference` image → an `image_url` item (a `data:` URI) with role `first_frame`; `seconds` →
  `duration` and `size` → `ratio` + `resolution`, as body fields (Ark's current, strictly validated way; the
  legacy `--dur 5` text suffix is never used, so the text is exactly the caller's prompt); our receiver as
  `callback_url` when the profile has a `webhook_url`. `size` names the exact pixel size the model renders
  (1.0 series: `1248x704` at 720p 16:9; 1.5 Pro and 2.0: `1280x720`), so the archived MP4 is the size the
  caller asked for; anything a model cannot render is a 400 naming the parameter, before any call.
- the task id is the upstream id; retrieve reads `GET /contents/generations/tasks/{id}`: `queued` → queued;
  `running` → in_progress (no progress figure unless Ark sends one); `succeeded` → completed only with a
  `content.video_url` (else failed `upstream_no_output`), expiring `retention_seconds` (24 h) after completion
  (`updated_at`); `failed` → failed with Ark's code and message, a `…SensitiveContentDetected` code as
  `moderation_blocked`; `cancelled` → failed `cancelled`; `expired` → failed `expired`.
- content → `content.video_url`, a presigned URL on TOS object storage: fetched by a client that holds no
  credentials, only on a TOS host (`STORAGE_HOST_SUFFIXES`) or one in `content_redirect_hosts`, over https
  (http only in dev mode), its query passed on byte for byte (re-encoding breaks the signature). Only the
  video is served; the thumbnail and spritesheet are derived by the archive from the MP4.
- delete → `DELETE /contents/generations/tasks/{id}`, which cancels a queued task or deletes a finished task's
  record; a running task cannot be stopped, so then nothing is asked upstream (the gateway hides the video and
  deletes its archive; the render finishes and is billed upstream).
- list (`recent_videos`) → `GET /contents/generations/tasks?page_num&page_size`, a few pages, newest first.
- remix → 400 `unsupported_by_provider`.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, Final, Literal
from urllib.parse import urljoin, urlsplit

import httpx

from app.core.config import UpstreamSettings
from app.core.errors import GatewayError, InvalidRequest, ResourceNotFound, UpstreamError
from app.upstream.capabilities import SERVED_VARIANTS, ModelCapabilities, check_create, check_remix
from app.upstream.client import CallKind, UpstreamClient, UpstreamRejected
from app.upstream.provider import RendersOnlyFromPrompts
from app.upstream.reference import SubmissionReferences
from app.upstream.schemas import CreateVideoCommand, UpstreamVideo, UpstreamVideoError

logger = logging.getLogger(__name__)

PROVIDER: Final = "Seedance on BytePlus ModelArk"
TASKS: Final = "contents/generations/tasks"
# Ark clears `content.video_url` 24 hours after the task ends.
RETENTION_SECONDS: Final = 24 * 3600.0
# Where Ark's video URLs live: TOS object storage of Volcengine (`….tos-<region>.volces.com`) and BytePlus
# (`….tos-<region>.bytepluses.com`). Any other host needs `content_redirect_hosts`.
STORAGE_HOST_SUFFIXES: Final = (".volces.com", ".bytepluses.com")
MAX_CONTENT_HOPS: Final = 3
# `recent_videos`: Ark allows one list call per second per account, so a few pages, a second apart.
RECENT_PAGES: Final = 5
RECENT_PAGE_SIZE: Final = 100
LIST_PAGE_INTERVAL_SECONDS: Final = 1.0
# A task id as Ark returns it (`cgt-20250331175019-68d9t`); anything else is never put into a URL path.
TASK_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
MAX_REASON_CHARS: Final = 1000
# Ark's moderation failures (input text or image, output video or audio) all end like this.
SENSITIVE = re.compile(r"SensitiveContentDetected", re.IGNORECASE)
# Ark's request fields, named as the caller named them.
PARAMS: Final[Mapping[str, str]] = {
    "duration": "seconds",
    "ratio": "size",
    "resolution": "size",
    "content": "prompt",
    "model": "model",
}

RATIOS: Final = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
# (resolution, ratio) → "WxH" of the MP4, per model generation, as Ark documents them.
V1_PIXELS: Final[Mapping[str, tuple[str, ...]]] = {
    "480p": ("864x480", "736x544", "640x640", "544x736", "480x864", "960x416"),
    "720p": ("1248x704", "1120x832", "960x960", "832x1120", "704x1248", "1504x640"),
    "1080p": ("1920x1088", "1664x1248", "1440x1440", "1248x1664", "1088x1920", "2176x928"),
}
V2_PIXELS: Final[Mapping[str, tuple[str, ...]]] = {
    "480p": ("864x496", "752x560", "640x640", "560x752", "496x864", "992x432"),
    "720p": ("1280x720", "1112x834", "960x960", "834x1112", "720x1280", "1470x630"),
    "1080p": ("1920x1080", "1664x1248", "1440x1440", "1248x1664", "1080x1920", "2206x946"),
    "4k": ("3840x2160", "3326x2494", "2880x2880", "2494x3326", "2160x3840", "4398x1886"),
}
# Ark's limits on an input image: each side 300 to 6000 px, width/height strictly between 0.4 and 2.5.
IMAGE_SIDES: Final = (300, 6000)
IMAGE_RATIOS: Final = (0.4, 2.5)


@dataclass(frozen=True)
class SeedanceModel:
    """What one Seedance model generation renders, and how a size names its ratio and resolution."""

    capabilities: ModelCapabilities
    # size → (ratio, resolution)
    sizes: Mapping[str, tuple[str, str]]
    images: Literal["none", "optional", "required"] = "optional"


def _model(
    pixels: Mapping[str, tuple[str, ...]],
    resolutions: tuple[str, ...],
    seconds: range,
    images: Literal["none", "optional", "required"] = "optional",
) -> SeedanceModel:
    sizes = {
        size: (ratio, resolution)
        for resolution in resolutions
        for size, ratio in zip(pixels[resolution], RATIOS, strict=True)
    }
    capabilities = ModelCapabilities(
        provider=PROVIDER,
        seconds=tuple(str(n) for n in seconds),
        sizes=tuple(sizes),
        # Ark crops a first frame to the requested ratio, so any image within its limits is taken.
        image_must_match_size=False,
        remix=False,
    )
    return SeedanceModel(capabilities=capabilities, sizes=sizes, images=images)


# Ark's documented limits: 1.0 series 2-12 s, 1.5 Pro 4-12 s, 2.0 series 4-15 s; 1080p except on 2.0 Fast and
# Mini; 4k on 2.0 only; the 1.0 Lite T2V model takes no image, the Lite I2V model needs one.
SEEDANCE_2 = _model(V2_PIXELS, ("480p", "720p", "1080p", "4k"), range(4, 16))
SEEDANCE_2_SMALL = _model(V2_PIXELS, ("480p", "720p"), range(4, 16))
SEEDANCE_1_5 = _model(V2_PIXELS, ("480p", "720p", "1080p"), range(4, 13))
SEEDANCE_1 = _model(V1_PIXELS, ("480p", "720p", "1080p"), range(2, 13))
SEEDANCE_1_T2V = _model(V1_PIXELS, ("480p", "720p", "1080p"), range(2, 13), images="none")
SEEDANCE_1_I2V = _model(V1_PIXELS, ("480p", "720p", "1080p"), range(2, 13), images="required")
# A model id (Volcengine's `doubao-` prefix dropped) → its generation, by the longest matching family name, so
# a new dated version of a known model works without a release of ours.
FAMILIES: Final[tuple[tuple[str, SeedanceModel], ...]] = (
    ("dreamina-seedance-2-0-fast", SEEDANCE_2_SMALL),
    ("dreamina-seedance-2-0-mini", SEEDANCE_2_SMALL),
    ("dreamina-seedance-2-0", SEEDANCE_2),
    ("seedance-2-0-fast", SEEDANCE_2_SMALL),
    ("seedance-2-0-mini", SEEDANCE_2_SMALL),
    ("seedance-2-0", SEEDANCE_2),
    ("seedance-1-5-pro", SEEDANCE_1_5),
    ("seedance-1-0-pro-fast", SEEDANCE_1),
    ("seedance-1-0-pro", SEEDANCE_1),
    ("seedance-1-0-lite-t2v", SEEDANCE_1_T2V),
    ("seedance-1-0-lite-i2v", SEEDANCE_1_I2V),
)


def seedance_model(model: str) -> SeedanceModel:
    """The generation of `model`; a 400 naming `model` when it is no Seedance model the gateway knows."""
    name = model.removeprefix("doubao-")
    for family, generation in FAMILIES:
        if name == family or name.startswith(family + "-"):
            return generation
    known = ", ".join(f"'{family}-…'" for family, _ in FAMILIES)
    raise InvalidRequest(
        f"Model '{model[:100]}' is not a Seedance model the gateway can map onto ModelArk's parameters. "
        f"Known model families: {known}.",
        param="model",
        code="invalid_value",
    )


def snake_code(code: str) -> str:
    """Ark's `RateLimitExceeded.EndpointRPMExceeded` → `rate_limit_exceeded_endpoint_rpm_exceeded`."""
    spaced = re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "_", code)
    return re.sub(r"[^a-z0-9]+", "_", spaced.lower()).strip("_")[:64] or "upstream_error"


def ark_error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """Ark's envelope `{"error": {"code": "InvalidParameter", "message": …, "param"?}}`.

    A 429's text names Ark's account and endpoint details: the caller gets our own words and the code. A 5xx
    message is only logged (the client answers with its own words). A moderation code becomes
    `moderation_blocked`, as on a failed task.
    """
    try:
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
    except ValueError:
        error = None
    status = response.status_code
    if not isinstance(error, dict):
        return f"Upstream answered {status}", None, None
    raw_code = error.get("code")
    code = raw_code if isinstance(raw_code, str) and raw_code else None
    message = _reason(error.get("message") or f"Upstream answered {status}")
    if status == 429:
        return f"Seedance is rate limiting this account ({(code or 'no code')[:64]}); retry shortly.", None, None
    param = error.get("param")
    mapped = PARAMS.get(param) if isinstance(param, str) else None
    if code is not None and SENSITIVE.search(code):
        return message, mapped, "moderation_blocked"
    return message, mapped, snake_code(code) if code else None


def _reason(value: object) -> str:
    return str(value)[:MAX_REASON_CHARS]


class SeedanceAdapter(RendersOnlyFromPrompts):
    """One per `kind: seedance` profile: the API through an `UpstreamClient` with the key, the video files
    through a second one that has no key to leak."""

    kind = "seedance"
    served_variants = SERVED_VARIANTS["seedance"]

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        profile: str,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_http_redirects: bool = False,
    ) -> None:
        self.profile = profile
        self._retention = settings.retention_seconds or RETENTION_SECONDS
        self._webhook_url = settings.webhook_url
        self._references = SubmissionReferences(settings.api_key)
        self._allow_http = allow_http_redirects
        self._file_hosts = frozenset(host.lower() for host in settings.content_redirect_hosts)
        # Pages of `recent_videos` are spaced this far apart (Ark's list allows one call per second).
        self.list_page_interval_seconds = LIST_PAGE_INTERVAL_SECONDS
        self._http = UpstreamClient(
            settings,
            transport=transport,
            allow_http_redirects=allow_http_redirects,
            profile=profile,
            auth_headers={"authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            error_fields=ark_error_fields,
        )
        self._files = UpstreamClient(
            settings,
            transport=transport,
            allow_http_redirects=allow_http_redirects,
            profile=profile,
            auth_headers={},
            error_fields=ark_error_fields,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._files.aclose()

    # ----- what the models take ---------------------------------------------------------------------

    def capabilities(self, model: str) -> ModelCapabilities:
        return seedance_model(model).capabilities

    def check_create(self, command: CreateVideoCommand) -> None:
        generation = seedance_model(command.model)
        check_create(command, generation.capabilities)
        has_image = command.image is not None or command.image_url is not None
        if has_image and generation.images == "none":
            raise InvalidRequest(
                f"Model '{command.model}' renders from text only; it takes no 'input_reference'.",
                param="input_reference",
                code="unsupported_by_provider",
            )
        if not has_image and generation.images == "required":
            raise InvalidRequest(
                f"Model '{command.model}' renders from an image: 'input_reference' is required.",
                param="input_reference",
                code="missing_required_parameter",
            )
        image = command.image
        if image is not None and image.width and image.height:
            (low, high), (narrow, wide) = IMAGE_SIDES, IMAGE_RATIOS
            if not (
                low <= image.width <= high
                and low <= image.height <= high
                and narrow < image.width / image.height < wide
            ):
                raise InvalidRequest(
                    f"'input_reference' is {image.width}x{image.height}; Seedance takes images whose sides are "
                    f"{low} to {high} px and whose width/height is between {narrow} and {wide}.",
                    param="input_reference",
                    code="invalid_image_size",
                )

    def check_remix(self, model: str) -> None:
        check_remix(model, self.capabilities(model))

    def unavailable(self) -> GatewayError | None:
        return self._http.unavailable()

    # ----- the contract -----------------------------------------------------------------------------

    async def create_video(self, command: CreateVideoCommand) -> UpstreamVideo:
        ratio, resolution = seedance_model(command.model).sizes[command.size]
        content: list[dict[str, Any]] = [{"type": "text", "text": command.prompt}]
        if command.image is not None:
            encoded = base64.b64encode(command.image.data).decode("ascii")
            content.append(
                {
                    "type": "image_url",
                    "image_url": {"url": f"data:{command.image.content_type};base64,{encoded}"},
                    "role": "first_frame",
                }
            )
        body: dict[str, Any] = {
            "model": command.model,
            "content": content,
            "ratio": ratio,
            "resolution": resolution,
            "duration": int(command.seconds),
        }
        if self._webhook_url:
            body["callback_url"] = self._references.callback_url(self._webhook_url, command.reference)
        try:
            response = await self._http.send("POST", TASKS, kind=CallKind.PAID, json=body)
        except ResourceNotFound as exc:
            # Ark's 404 to a create means the account cannot use the model (`ModelNotOpen`, an unknown
            # endpoint): the operator's to fix, not the caller's, and nothing was started. Ark's text names
            # the account, so it goes to the log only.
            logger.error("seedance profile %s cannot use model %s: %s", self.profile, command.model, exc.message)
            raise UpstreamError(
                f"The gateway's Seedance account cannot use model '{command.model}' (not activated there); an "
                "operator must enable it.",
                code="upstream_model_unavailable",
            ) from exc
        try:
            task_id = _payload(response).get("id")
        except UpstreamError:
            task_id = None
        if not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
            # The render may have started: without its id we cannot follow it. Never re-sent.
            raise UpstreamError(
                "Upstream accepted the render but answered without a usable task id.",
                code="upstream_bad_response",
                headers={"x-should-retry": "false"},
            )
        return UpstreamVideo(
            id=task_id,
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
        return self._video_of(upstream_id, await self._task(upstream_id))

    async def delete_video(self, upstream_id: str) -> None:
        task = await self._task(upstream_id)
        if task.get("status") == "running":
            # Ark cannot stop a running task: ours goes, the render finishes (and is billed) upstream.
            return
        try:
            await self._http.send("DELETE", f"{TASKS}/{upstream_id}", kind=CallKind.READ)
        except UpstreamRejected:
            # It may have started between our read and the delete: that is the one refusal we expect.
            if (await self._task(upstream_id)).get("status") == "running":
                return
            raise

    def called_back_id(self, delivered_id: str, *, model: str) -> str:
        return delivered_id

    async def recent_videos(self, *, created_since: int) -> list[UpstreamVideo] | None:
        # Ark's list is newest first: page until a page reaches back past `created_since` (bounded: a cut-off
        # create is looked for minutes after it, not days). A task Ark lists without its prompt cannot be
        # matched to a create, and so is never adopted.
        found: list[UpstreamVideo] = []
        for page in range(1, RECENT_PAGES + 1):
            if page > 1:
                await asyncio.sleep(self.list_page_interval_seconds)
            params = {"page_num": page, "page_size": RECENT_PAGE_SIZE}
            listing = _payload(await self._http.send("GET", TASKS, kind=CallKind.READ, params=params))
            items = listing.get("items")
            if not isinstance(items, list):
                raise UpstreamError("Upstream listed its tasks without an 'items' list.", code="upstream_bad_response")
            videos = [video for item in items if (video := self._listed(item)) is not None]
            found.extend(video for video in videos if video.created_at >= created_since)
            total = listing.get("total")
            if (
                not items
                or any(video.created_at < created_since for video in videos)
                or (isinstance(total, int) and page * RECENT_PAGE_SIZE >= total)
            ):
                break
        return sorted(found, key=lambda video: video.created_at, reverse=True)

    @asynccontextmanager
    async def stream_content(self, upstream_id: str, *, variant: str) -> AsyncIterator[httpx.Response]:
        if variant not in self.served_variants:
            raise ResourceNotFound(
                f"The {variant} of this video is made by the gateway from the archived MP4; it is available "
                "once the video is archived.",
                param="variant",
                code="variant_not_ready",
            )
        task = await self._task(upstream_id)
        url = _video_url(task) if task.get("status") == "succeeded" else None
        if url is None:
            raise ResourceNotFound("Upstream has no video for this task.", code="not_found")
        for _hop in range(MAX_CONTENT_HOPS + 1):
            self._check_file_url(url)
            try:
                # Sent as given: the query is TOS's signature, which any re-encoding would break.
                response = await self._files.send(
                    "GET", url, kind=CallKind.READ, stream=True, headers={"accept": "video/mp4"}
                )
            except UpstreamError as exc:
                if exc.code != "upstream_auth_failed":
                    raise
                # TOS answers 403 once the link has expired: the video is gone upstream, not our key refused.
                raise ResourceNotFound(
                    "Upstream's link to this video was refused (it expires 24 hours after the render).",
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

    def _check_file_url(self, url: str) -> None:
        """Only TOS hosts (or configured ones), over https (http in dev mode), are fetched."""
        target = urlsplit(url)
        host = (target.hostname or "").lower()
        schemes = ("https", "http") if self._allow_http else ("https",)
        if target.scheme not in schemes or not (host.endswith(STORAGE_HOST_SUFFIXES) or host in self._file_hosts):
            raise UpstreamError(
                f"Upstream named a video file at a location that is not allowed ({target.scheme}://{host}); "
                "not fetched (see content_redirect_hosts).",
                code="redirect_not_allowed",
            )

    async def _task(self, upstream_id: str) -> dict[str, Any]:
        if not TASK_ID.fullmatch(upstream_id):
            raise ResourceNotFound("Not a Seedance task id.", code="not_found")
        return _payload(await self._http.send("GET", f"{TASKS}/{upstream_id}", kind=CallKind.READ))

    def _listed(self, item: object) -> UpstreamVideo | None:
        """A listed task as a video; None for an item we cannot read (one bad item does not hide the rest)."""
        task_id = item.get("id") if isinstance(item, dict) else None
        if not isinstance(item, dict) or not isinstance(task_id, str) or not TASK_ID.fullmatch(task_id):
            return None
        try:
            video = self._video_of(task_id, item)
        except UpstreamError:
            return None
        return video.model_copy(update={"prompt": _prompt(item)})

    def _video_of(self, task_id: str, task: Mapping[str, Any]) -> UpstreamVideo:
        now = int(time.time())
        created = _unix(task.get("created_at")) or now
        model = task.get("model")
        model = model if isinstance(model, str) else ""
        fields: dict[str, Any] = {
            "id": task_id,
            "model": model,
            "created_at": created,
            "progress": None,
            **_size_and_seconds(model, task),
        }
        status = task.get("status")
        if status == "queued":
            return UpstreamVideo(status="queued", **{**fields, "progress": 0})
        if status == "running":
            progress = task.get("progress")
            # Ark is not known to report one; if it does, it is a percentage, and never 100 before the end.
            reported = (
                min(max(progress, 0), 99) if isinstance(progress, int) and not isinstance(progress, bool) else None
            )
            return UpstreamVideo(status="in_progress", **{**fields, "progress": reported})
        if status == "succeeded":
            if _video_url(task) is None:
                return UpstreamVideo(
                    status="failed",
                    error=UpstreamVideoError(code="upstream_no_output", message="Upstream finished without a video."),
                    **fields,
                )
            # The URL is cleared 24 h after the task ends: counted from Ark's own `updated_at`.
            completed = _unix(task.get("updated_at")) or now
            return UpstreamVideo(
                status="completed",
                completed_at=completed,
                expires_at=int(completed + self._retention),
                **{**fields, "progress": 100},
            )
        if status == "failed":
            return UpstreamVideo(status="failed", error=_failure(task.get("error")), **fields)
        if status == "cancelled":
            error = UpstreamVideoError(code="cancelled", message="The task was cancelled upstream before it started.")
            return UpstreamVideo(status="failed", error=error, **fields)
        if status == "expired":
            error = UpstreamVideoError(
                code="expired", message="The task expired upstream before it finished (execution_expires_after)."
            )
            return UpstreamVideo(status="failed", error=error, **fields)
        raise UpstreamError(
            f"Upstream reported a task status the gateway does not know ({str(status)[:40]!r}).",
            code="upstream_bad_response",
        )


def _payload(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamError("Upstream answered with something that is not a JSON object.", code="upstream_bad_response")
    return payload


def _unix(value: object) -> int | None:
    if isinstance(value, int | float) and not isinstance(value, bool) and value > 0:
        return int(value)
    return None


def _video_url(task: Mapping[str, Any]) -> str | None:
    content = task.get("content")
    url = content.get("video_url") if isinstance(content, dict) else None
    return url if isinstance(url, str) and url else None


def _failure(error: object) -> UpstreamVideoError:
    code = error.get("code") if isinstance(error, dict) else None
    message = error.get("message") if isinstance(error, dict) else None
    text = _reason(message) if isinstance(message, str) and message.strip() else "The render failed upstream."
    if isinstance(code, str) and SENSITIVE.search(code):
        return UpstreamVideoError(code="moderation_blocked", message=text)
    return UpstreamVideoError(
        code=snake_code(code) if isinstance(code, str) and code else "upstream_failed", message=text
    )


def _size_and_seconds(model: str, task: Mapping[str, Any]) -> dict[str, str]:
    """The caller's `size` and `seconds` of a task, from Ark's `ratio`, `resolution` and `duration`; empty when
    Ark's values name none (the gateway keeps its own from the create)."""
    try:
        sizes = seedance_model(model).sizes
    except InvalidRequest:
        sizes = {}
    wanted = (task.get("ratio"), task.get("resolution"))
    size = next((name for name, pair in sizes.items() if pair == wanted), "")
    duration = task.get("duration")
    seconds = str(duration) if isinstance(duration, int) and not isinstance(duration, bool) and duration > 0 else ""
    return {"size": size, "seconds": seconds}


def _prompt(task: Mapping[str, Any]) -> str | None:
    """The prompt, when Ark lists the task with its input content (a list holding one `text` item)."""
    content = task.get("content")
    if not isinstance(content, list):
        return None
    texts = [item.get("text") for item in content if isinstance(item, dict) and item.get("type") == "text"]
    return texts[0] if len(texts) == 1 and isinstance(texts[0], str) else None
