"""The Replicate adapter (`kind: replicate`): video models hosted on Replicate behind OpenAI's `/v1/videos` contract.

Mapping (docs/providers.md has the table):
- the gateway's model name is Replicate's `owner/name` (`google/veo-3`, `kwaivgi/kling-v2.1`, ...). Each model
  belongs to a family (`MODELS`) that says which `input` fields `seconds` and `size` become (`duration`,
  `aspect_ratio`, `resolution`, `mode`, `num_frames`...) and whether, and under which field, it takes an image.
  A value the family cannot express is refused before the call (400 naming the parameter).
- create → `POST /v1/models/{owner}/{name}/predictions` with `Authorization: Bearer TOKEN`, body
  `{"input": {...}}` plus, when the profile has a `webhook_url`, `webhook` and `webhook_events_filter:
  ["completed"]` (one delivery per render, at its end). `Prefer: wait` is never sent: a create must answer at
  once, and the render is followed by webhook and polls. An image goes in the family's field as a `data:` URI.
- the prediction `id` is the upstream id; retrieve → `GET /v1/predictions/{id}`: `starting` → `queued`,
  `processing` → `in_progress`, `succeeded` with a video URL in `output` → `completed` (without one →
  `failed` `upstream_no_output`), `failed` → `failed` with Replicate's `error` (a safety/moderation refusal →
  `moderation_blocked`), `canceled` → `failed` `cancelled`. Replicate deletes inputs and outputs an hour after
  a prediction ends: `expires_at` is `completed_at` + `retention_seconds` (default 3600).
- content → the `output` file URL, fetched by a client that holds no token at all (the file host is another
  host), and only from the API host, `replicate.delivery` (and its subdomains) or `content_redirect_hosts`,
  over https (http too in dev mode, for the simulator). Only the video is served; the thumbnail and
  spritesheet are derived by the archive from the MP4.
- delete → a prediction still running is cancelled (`POST /v1/predictions/{id}/cancel`); a finished one is
  only hidden here (Replicate has no delete). Remix → 400 `unsupported_by_provider`.
- recent renders → `GET /v1/predictions`, newest first, following Replicate's cursor for a bounded number of
  pages, until a page reaches back past the time asked for.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

import httpx

from app.core.config import UpstreamSettings
from app.core.errors import GatewayError, InvalidRequest, ResourceNotFound, UpstreamError
from app.upstream.capabilities import SERVED_VARIANTS, ModelCapabilities, check_create, check_remix
from app.upstream.client import NO_RETRY_HEADERS, RECENT_PAGES, CallKind, UpstreamClient
from app.upstream.provider import RendersOnlyFromPrompts
from app.upstream.reference import SubmissionReferences
from app.upstream.schemas import CreateVideoCommand, UpstreamVideo, UpstreamVideoError

PROVIDER: Final = "Replicate"
# "Input and output (including any files) are automatically deleted after an hour" for API predictions.
RETENTION_SECONDS: Final = 3600.0
# The host of Replicate's output files; its subdomains serve files too.
DELIVERY_HOST: Final = "replicate.delivery"
# Only the terminal event: the render's start, logs and partial outputs would each be a delivery to record.
WEBHOOK_EVENTS: Final = ("completed",)
RUNNING: Final = frozenset({"starting", "processing"})
# A prediction id as Replicate makes them (26 lowercase letters and digits); anything else never reaches a URL.
PREDICTION_ID = re.compile(r"[a-z0-9]{1,64}")
MAX_REASON_CHARS: Final = 1000
BAD_RESPONSE: Final = "upstream_bad_response"
# Replicate reports a moderation refusal only as a `failed` prediction whose `error` text says so; its
# sensitive-content code is E005. The words below are how model safety checkers phrase theirs.
MODERATION = re.compile(r"\bE005\b|flagged as sensitive|nsfw|safety|moderat|content policy|sensitive content", re.I)


@dataclass(frozen=True)
class Family:
    """How one family of models takes `seconds`, `size` and an image, as `input` fields."""

    label: str  # in messages: "Veo on Replicate"
    # seconds → the input fields that ask for it (e.g. {"duration": 8}).
    durations: Mapping[str, Mapping[str, Any]]
    # size → the input fields that ask for it (e.g. {"aspect_ratio": "16:9", "resolution": "720p"}).
    sizes: Mapping[str, Mapping[str, Any]]
    seconds_by_size: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # The input field that takes a first-frame image; None for text-only models.
    image_field: str | None = None
    image_required: bool = False
    # True where the output takes the image's shape, so the image must already be the requested size.
    image_must_match_size: bool = True

    def capabilities(self) -> ModelCapabilities:
        return ModelCapabilities(
            provider=self.label,
            seconds=tuple(self.durations),
            sizes=tuple(self.sizes),
            seconds_by_size=self.seconds_by_size,
            image_must_match_size=self.image_must_match_size,
            # A link is fetched by the gateway (never by Replicate) and sent as a data URI.
            accepts_image_url=self.image_field is not None,
            remix=False,
        )

    def describe(self, values: Mapping[str, Any]) -> tuple[str, str]:
        """The (seconds, size) a prediction's `input` asked for; "" where the fields name none, or several."""
        return _only(self.durations, values), _only(self.sizes, values)


def _only(table: Mapping[str, Mapping[str, Any]], values: Mapping[str, Any]) -> str:
    found = [key for key, fields in table.items() if all(_same(values.get(k), v) for k, v in fields.items())]
    return found[0] if len(found) == 1 else ""


def _same(given: object, wanted: object) -> bool:
    # `True == 1` in Python; a JSON boolean is never a duration.
    return type(given) is type(wanted) and given == wanted


def _durations(*seconds: int) -> dict[str, dict[str, Any]]:
    return {str(value): {"duration": value} for value in seconds}


def _aspect(ratio: str, resolution: str) -> dict[str, Any]:
    return {"aspect_ratio": ratio, "resolution": resolution}


# Veo 3 / 3.1 (Google's limits): 4, 6 or 8 s; 16:9 or 9:16 at 720p or 1080p; 1080p only at 8 s; any image.
VEO = Family(
    label="Veo on Replicate",
    durations=_durations(4, 6, 8),
    sizes={
        "1280x720": _aspect("16:9", "720p"),
        "720x1280": _aspect("9:16", "720p"),
        "1920x1080": _aspect("16:9", "1080p"),
        "1080x1920": _aspect("9:16", "1080p"),
    },
    seconds_by_size={"1920x1080": ("8",), "1080x1920": ("8",)},
    image_field="image",
    image_must_match_size=False,
)
# Kling v2.1 animates a start image (required): `mode` standard is 720p, pro 1080p; the shape is the image's.
KLING = Family(
    label="Kling v2.1 on Replicate",
    durations=_durations(5, 10),
    sizes={
        "1280x720": {"mode": "standard"},
        "720x1280": {"mode": "standard"},
        "1920x1080": {"mode": "pro"},
        "1080x1920": {"mode": "pro"},
    },
    image_field="start_image",
    image_required=True,
)
# Kling v2.1 Master: text or image, 1080p, 16:9, 9:16 or 1:1 (an image's own shape wins over `aspect_ratio`).
KLING_MASTER = Family(
    label="Kling v2.1 Master on Replicate",
    durations=_durations(5, 10),
    sizes={
        "1920x1080": {"aspect_ratio": "16:9"},
        "1080x1920": {"aspect_ratio": "9:16"},
        "1080x1080": {"aspect_ratio": "1:1"},
    },
    image_field="start_image",
)
# Hailuo 02: 6 or 10 s, landscape at 768p or 1080p (1080p only 6 s); the first frame sets the shape.
HAILUO = Family(
    label="Hailuo 02 on Replicate",
    durations=_durations(6, 10),
    sizes={"1366x768": {"resolution": "768p"}, "1920x1080": {"resolution": "1080p"}},
    seconds_by_size={"1920x1080": ("6",)},
    image_field="first_frame_image",
)
# Seedance 1: 5 or 10 s at 480p, 720p or 1080p in 16:9, 9:16 or 1:1 (an image's own shape wins).
SEEDANCE = Family(
    label="Seedance 1 on Replicate",
    durations=_durations(5, 10),
    sizes={
        "864x480": _aspect("16:9", "480p"),
        "480x864": _aspect("9:16", "480p"),
        "640x640": _aspect("1:1", "480p"),
        "1280x720": _aspect("16:9", "720p"),
        "720x1280": _aspect("9:16", "720p"),
        "960x960": _aspect("1:1", "720p"),
        "1920x1080": _aspect("16:9", "1080p"),
        "1080x1920": _aspect("9:16", "1080p"),
        "1440x1440": _aspect("1:1", "1080p"),
    },
    image_field="image",
)
# Wan 2.2 text-to-video: no duration field; 81 frames at 16 fps is its 5 s clip. Text only.
WAN = Family(
    label="Wan 2.2 (text to video) on Replicate",
    durations={"5": {"num_frames": 81, "frames_per_second": 16}},
    sizes={
        "832x480": _aspect("16:9", "480p"),
        "480x832": _aspect("9:16", "480p"),
        "1280x720": _aspect("16:9", "720p"),
        "720x1280": _aspect("9:16", "720p"),
    },
)
# The models this adapter can map, by their Replicate name (which is the gateway's model name).
MODELS: Final[Mapping[str, Family]] = {
    "google/veo-3": VEO,
    "google/veo-3-fast": VEO,
    "google/veo-3.1": VEO,
    "google/veo-3.1-fast": VEO,
    "kwaivgi/kling-v2.1": KLING,
    "kwaivgi/kling-v2.1-master": KLING_MASTER,
    "minimax/hailuo-02": HAILUO,
    "bytedance/seedance-1-pro": SEEDANCE,
    "bytedance/seedance-1-lite": SEEDANCE,
    "wan-video/wan-2.2-t2v-fast": WAN,
}


def replicate_error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """Replicate's problem details `{"title", "detail", "status"}`; a 429 carries `{"detail"}` only."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    fallback = f"Upstream answered {response.status_code}"
    if not isinstance(payload, dict):
        return fallback, None, None
    detail, title = payload.get("detail"), payload.get("title")
    message = next((text for text in (detail, title) if isinstance(text, str) and text.strip()), fallback)
    code = None
    if isinstance(title, str):
        # "Input validation failed" → "input_validation_failed": a stable code from Replicate's own title.
        code = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")[:64] or None
    return _reason(message), None, code


def _reason(value: object) -> str:
    return str(value)[:MAX_REASON_CHARS]


class ReplicateAdapter(RendersOnlyFromPrompts):
    """One per `kind: replicate` profile: the API through an `UpstreamClient` with the token, files through
    a second one that has no token to leak."""

    kind = "replicate"
    served_variants = SERVED_VARIANTS["replicate"]

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
        root = settings.base_url.rstrip("/")
        # `base_url` is the API's host (https://api.replicate.com); a configured `/v1` is not doubled.
        api_base = root if root.endswith("/v1") else root + "/v1"
        self._api_host = urlsplit(api_base).hostname or ""
        file_hosts = settings.content_redirect_hosts
        self._file_hosts = frozenset(file_hosts)
        self._http = UpstreamClient(
            settings.model_copy(update={"base_url": api_base}),
            transport=transport,
            allow_http_redirects=allow_http_redirects,
            profile=profile,
            auth_headers={"authorization": f"Bearer {settings.api_key.get_secret_value()}"},
            error_fields=replicate_error_fields,
        )
        # Output files live on another host: this client has no credentials at all, so no hop can carry them.
        self._files = UpstreamClient(
            settings.model_copy(update={"base_url": api_base, "content_redirect_hosts": [DELIVERY_HOST, *file_hosts]}),
            transport=transport,
            allow_http_redirects=allow_http_redirects,
            profile=profile,
            auth_headers={},
            error_fields=replicate_error_fields,
        )

    async def aclose(self) -> None:
        await self._http.aclose()
        await self._files.aclose()

    # ----- what the models take ---------------------------------------------------------------------

    def capabilities(self, model: str) -> ModelCapabilities:
        return _family(model).capabilities()

    def check_create(self, command: CreateVideoCommand) -> None:
        family = _family(command.model)
        has_image = command.image is not None or command.image_url is not None
        if has_image and family.image_field is None:
            raise InvalidRequest(
                f"Model '{command.model}' ({family.label}) renders from text only; it takes no 'input_reference'.",
                param="input_reference",
                code="unsupported_by_provider",
            )
        if family.image_required and not has_image:
            raise InvalidRequest(
                f"Model '{command.model}' ({family.label}) animates a start image: 'input_reference' is required.",
                param="input_reference",
                code="missing_required_parameter",
            )
        check_create(command, family.capabilities())

    def check_remix(self, model: str) -> None:
        check_remix(model, self.capabilities(model))

    def unavailable(self) -> GatewayError | None:
        return self._http.unavailable()

    # ----- the contract -------------------------------------------------------------------------------

    async def create_video(self, command: CreateVideoCommand) -> UpstreamVideo:
        family = _family(command.model)
        values: dict[str, Any] = {
            "prompt": command.prompt,
            **family.durations[command.seconds],
            **family.sizes[command.size],
        }
        if command.image is not None and family.image_field is not None:
            encoded = base64.b64encode(command.image.data).decode("ascii")
            values[family.image_field] = f"data:{command.image.content_type};base64,{encoded}"
        body: dict[str, Any] = {"input": values}
        if self._webhook_url:
            body["webhook"] = self._references.callback_url(self._webhook_url, command.reference)
            body["webhook_events_filter"] = list(WEBHOOK_EVENTS)
        response = await self._http.send("POST", f"models/{command.model}/predictions", kind=CallKind.PAID, json=body)
        prediction = _payload(response, paid=True)
        prediction_id = prediction.get("id")
        if not isinstance(prediction_id, str) or not PREDICTION_ID.fullmatch(prediction_id):
            # The render may have started: without its id we cannot follow it. Never re-sent.
            raise UpstreamError(
                "Upstream accepted the render but answered without a usable prediction id.",
                code=BAD_RESPONSE,
                headers=dict(NO_RETRY_HEADERS),
            )
        asked = {"model": command.model, "prompt": command.prompt, "seconds": command.seconds, "size": command.size}
        try:
            return self._video_of(prediction, **asked)
        except UpstreamError:
            # The render exists (its id came back) with a status we do not know: the polls will tell.
            return UpstreamVideo(id=prediction_id, status="queued", progress=None, created_at=int(time.time()), **asked)

    async def remix_video(self, upstream_id: str, *, prompt: str) -> UpstreamVideo:
        raise UpstreamError(f"{PROVIDER} cannot remix a video.", code="unsupported_by_provider")

    async def retrieve_video(self, upstream_id: str) -> UpstreamVideo:
        return self._described(await self._prediction(upstream_id))

    async def delete_video(self, upstream_id: str) -> None:
        # Replicate deletes nothing on request (its data goes after an hour); a render still running is
        # cancelled so it stops costing. Ours (the row, the archive) go with the video in any case.
        if not PREDICTION_ID.fullmatch(upstream_id):
            return
        try:
            prediction = await self._prediction(upstream_id)
            if prediction.get("status") in RUNNING:
                await self._http.send("POST", f"predictions/{upstream_id}/cancel", kind=CallKind.READ)
        except ResourceNotFound:
            return  # already gone upstream: nothing left to stop

    def called_back_id(self, delivered_id: str, *, model: str) -> str:
        return delivered_id

    async def recent_videos(self, *, created_since: int) -> list[UpstreamVideo] | None:
        # Newest first, page by page along Replicate's cursor, until a page reaches back past `created_since`.
        found: list[UpstreamVideo] = []
        cursor: str | None = None
        for _ in range(RECENT_PAGES):
            params = {"cursor": cursor} if cursor is not None else {}
            page = _payload(await self._http.send("GET", "predictions", kind=CallKind.READ, params=params))
            results = page.get("results")
            if not isinstance(results, list):
                raise UpstreamError("Upstream listed predictions without a 'results' list.", code=BAD_RESPONSE)
            # A malformed entry is skipped, not fatal: the others may still be the render looked for.
            videos = [video for item in results if (video := self._listed(item)) is not None]
            found.extend(video for video in videos if video.created_at >= created_since)
            cursor = _cursor(page.get("next"))
            if cursor is None or not results or any(video.created_at < created_since for video in videos):
                break
        return found

    @asynccontextmanager
    async def stream_content(self, upstream_id: str, *, variant: str) -> AsyncIterator[httpx.Response]:
        if variant not in self.served_variants:
            raise ResourceNotFound(
                f"The {variant} of this video is made by the gateway from the archived MP4; it is available "
                "once the video is archived.",
                param="variant",
                code="variant_not_ready",
            )
        prediction = await self._prediction(upstream_id)
        url = _video_url(prediction.get("output"))
        if prediction.get("status") != "succeeded" or prediction.get("data_removed") is True or url is None:
            raise ResourceNotFound("Upstream has no video for this prediction (or no longer has it).", code="not_found")
        self._check_file_url(url)
        async with self._files.stream(url, headers={"accept": "video/mp4"}) as response:
            yield response

    # ----- internals ----------------------------------------------------------------------------------

    def _check_file_url(self, url: str) -> None:
        target = urlsplit(url)
        host = target.hostname or ""
        schemes = {"https", "http"} if self._allow_http else {"https"}
        allowed = (
            host == self._api_host
            or host == DELIVERY_HOST
            or host.endswith("." + DELIVERY_HOST)
            or host in self._file_hosts
        )
        if target.scheme not in schemes or not allowed:
            raise UpstreamError(
                f"Upstream named a video file where it may not be fetched from ({target.scheme}://{host}).",
                code="redirect_not_allowed",
            )

    async def _prediction(self, upstream_id: str) -> dict[str, Any]:
        if not PREDICTION_ID.fullmatch(upstream_id):
            raise ResourceNotFound("Not a Replicate prediction id.", code="not_found")
        return _payload(await self._http.send("GET", f"predictions/{upstream_id}", kind=CallKind.READ))

    def _described(self, prediction: Mapping[str, Any]) -> UpstreamVideo:
        """A prediction as the gateway's video, with what its `input` says of the prompt, seconds and size."""
        model = prediction.get("model")
        model = model if isinstance(model, str) else ""
        values = prediction.get("input")
        values = values if isinstance(values, dict) else {}
        prompt = values.get("prompt")
        family = MODELS.get(model)
        seconds, size = family.describe(values) if family is not None else ("", "")
        return self._video_of(
            prediction, model=model, prompt=prompt if isinstance(prompt, str) else None, seconds=seconds, size=size
        )

    def _listed(self, item: object) -> UpstreamVideo | None:
        if not isinstance(item, dict):
            return None
        prediction_id = item.get("id")
        if not isinstance(prediction_id, str) or not PREDICTION_ID.fullmatch(prediction_id):
            return None
        if _timestamp(item.get("created_at")) is None:
            return None  # cannot be placed in time, so cannot be matched to a create
        try:
            return self._described(item)
        except UpstreamError:
            return None

    def _video_of(
        self, prediction: Mapping[str, Any], *, model: str, prompt: str | None, seconds: str, size: str
    ) -> UpstreamVideo:
        prediction_id = prediction.get("id")
        if not isinstance(prediction_id, str) or not PREDICTION_ID.fullmatch(prediction_id):
            raise UpstreamError("Upstream answered with a prediction without a usable id.", code=BAD_RESPONSE)
        now = int(time.time())
        fields: dict[str, Any] = {
            "id": prediction_id,
            "model": model,
            "prompt": prompt,
            "seconds": seconds,
            "size": size,
            "progress": None,  # Replicate reports none: the gateway synthesizes one
            "created_at": _timestamp(prediction.get("created_at")) or now,
        }
        status = prediction.get("status")
        if status == "starting":
            return UpstreamVideo(status="queued", **fields)
        if status == "processing":
            return UpstreamVideo(status="in_progress", **fields)
        if status == "succeeded":
            return self._succeeded(prediction, fields, now)
        if status == "failed":
            return UpstreamVideo(status="failed", error=_failure(prediction.get("error")), **fields)
        if status == "canceled":
            error = UpstreamVideoError(code="cancelled", message="The render was cancelled on Replicate.")
            return UpstreamVideo(status="failed", error=error, **fields)
        raise UpstreamError(
            f"Upstream answered with an unknown prediction status {str(status)[:40]!r}.", code=BAD_RESPONSE
        )

    def _succeeded(self, prediction: Mapping[str, Any], fields: dict[str, Any], now: int) -> UpstreamVideo:
        completed = _timestamp(prediction.get("completed_at")) or now
        expires = int(completed + self._retention)
        removed = prediction.get("data_removed") is True
        if removed:
            # The render succeeded and its output is already deleted: completed, with its window closed.
            expires = min(expires, now)
        elif _video_url(prediction.get("output")) is None:
            return UpstreamVideo(
                status="failed",
                error=UpstreamVideoError(code="upstream_no_output", message="Upstream finished without a video."),
                **fields,
            )
        return UpstreamVideo(
            status="completed", completed_at=completed, expires_at=expires, **{**fields, "progress": 100}
        )


def _family(model: str) -> Family:
    family = MODELS.get(model)
    if family is None:
        choices = ", ".join(f"'{name}'" for name in MODELS)
        raise InvalidRequest(
            f"Model '{model[:100]}' is not one the gateway can map onto Replicate's inputs. Supported: {choices}.",
            param="model",
            code="invalid_value",
        )
    return family


def _failure(error: object) -> UpstreamVideoError:
    text = error if isinstance(error, str) and error.strip() else "The render failed on Replicate."
    if MODERATION.search(text):
        return UpstreamVideoError(code="moderation_blocked", message=_reason(text))
    return UpstreamVideoError(code="upstream_failed", message=_reason(text))


def _video_url(output: object) -> str | None:
    """The video's URL: video models answer one URL, some a list of them (the first is the video)."""
    if isinstance(output, list) and output:
        output = output[0]
    if isinstance(output, str) and output.startswith(("https://", "http://")):
        return output
    return None


def _cursor(next_url: object) -> str | None:
    # Only the cursor is taken from `next`; its host is never followed (the API's own host is used).
    if not isinstance(next_url, str) or not next_url:
        return None
    values = parse_qs(urlsplit(next_url).query).get("cursor")
    return values[0] if values and values[0] else None


def _payload(response: httpx.Response, *, paid: bool = False) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        # After a create, the render may have started whatever the answer looked like: never re-sent.
        raise UpstreamError(
            "Upstream answered with something that is not a JSON object.",
            code=BAD_RESPONSE,
            headers=dict(NO_RETRY_HEADERS) if paid else {},
        )
    return payload


def _timestamp(value: object) -> int | None:
    """Unix seconds of Replicate's ISO 8601 times (`2025-06-02T10:00:00.123456Z`); None when absent or unreadable."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    # Python 3.11 reads at most 6 fractional digits; some answers carry 9.
    text = re.sub(r"(\.\d{6})\d+", r"\1", text)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return int(parsed.timestamp())
