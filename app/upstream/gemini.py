"""The Veo adapter (`kind: gemini`): Google's Gemini API behind OpenAI's `/v1/videos` contract.

Mapping (docs/providers.md has the table):
- create → `POST /v1beta/models/{model}:predictLongRunning` with `x-goog-api-key`; `seconds` → a JSON number
  `durationSeconds`, `size` → `aspectRatio` + `resolution`, an `input_reference` image → `instances[0].image`
  (base64 + mimeType). Values the model cannot render are refused before the call (`capabilities`).
- the operation's name (`models/{model}/operations/{id}`) is the upstream id; retrieve polls `GET /v1beta/{name}`:
  not done → `in_progress` (no progress is reported: the gateway synthesizes one); done with a sample →
  `completed`; done with `error` → `failed` with Google's status and message; done with
  `raiMediaFilteredCount > 0` and no sample → `failed` `moderation_blocked` with Google's reason. A done
  operation without a video is never `completed`.
- content → the sample's file URI with the key, following Google's redirect to the download host without it.
  Only the video is served; the thumbnail and spritesheet are derived by the archive from the MP4.
- delete → nothing upstream (the Gemini API has no video delete: the gateway hides the video and deletes its
  archive); remix → 400 `unsupported_by_provider`.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, Final
from urllib.parse import urlsplit

import httpx

from app.core.config import UpstreamSettings
from app.core.errors import GatewayError, ResourceNotFound, UpstreamError
from app.upstream.capabilities import SERVED_VARIANTS, ModelCapabilities, check_create, check_remix
from app.upstream.client import CallKind, UpstreamClient
from app.upstream.schemas import CreateVideoCommand, UpstreamVideo, UpstreamVideoError

PROVIDER: Final = "Veo on the Gemini API"
# Google deletes generated files two days after they are made.
RETENTION_SECONDS: Final = 2 * 24 * 3600.0

# size → (aspectRatio, resolution). Veo renders 16:9 or 9:16 at 720p or 1080p.
SIZES: Final[Mapping[str, tuple[str, str]]] = {
    "720x1280": ("9:16", "720p"),
    "1280x720": ("16:9", "720p"),
    "1080x1920": ("9:16", "1080p"),
    "1920x1080": ("16:9", "1080p"),
}
# Google's documented limits for Veo: 4, 6 or 8 s; 16:9 or 9:16 at 720p or 1080p; 1080p only at 8 s.
VEO = ModelCapabilities(
    provider=PROVIDER,
    seconds=("4", "6", "8"),
    sizes=tuple(SIZES),
    # 1080p renders only 8 s.
    seconds_by_size={"1080x1920": ("8",), "1920x1080": ("8",)},
    image_must_match_size=False,
    accepts_image_url=False,
    remix=False,
)
# An operation name as Google returns it; anything else is never put into a URL path.
OPERATION_NAME = re.compile(r"models/[A-Za-z0-9._-]{1,100}/operations/[A-Za-z0-9_-]{1,100}")
MAX_REASON_CHARS: Final = 1000


def google_error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """Google's envelope `{"error": {"code": 429, "message": …, "status": "RESOURCE_EXHAUSTED"}}`."""
    try:
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
    except ValueError:
        error = None
    if not isinstance(error, dict):
        return f"Upstream answered {response.status_code}", None, None
    message = str(error.get("message") or f"Upstream answered {response.status_code}")
    status = error.get("status")
    return message, None, status.lower() if isinstance(status, str) and status else None


def _reason(value: object) -> str:
    return str(value)[:MAX_REASON_CHARS]


class GeminiAdapter:
    """One per `kind: gemini` profile; sends through an `UpstreamClient` with Google's key and envelope."""

    kind = "gemini"
    served_variants = SERVED_VARIANTS["gemini"]

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
        self._host = urlsplit(settings.base_url).netloc
        self._http = UpstreamClient(
            settings.model_copy(update={"base_url": settings.base_url.rstrip("/") + "/v1beta"}),
            transport=transport,
            allow_http_redirects=allow_http_redirects,
            profile=profile,
            auth_headers={"x-goog-api-key": settings.api_key.get_secret_value()},
            error_fields=google_error_fields,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    def capabilities(self, model: str) -> ModelCapabilities:
        return VEO

    def check_create(self, command: CreateVideoCommand) -> None:
        check_create(command, self.capabilities(command.model))

    def check_remix(self, model: str) -> None:
        check_remix(model, self.capabilities(model))

    def unavailable(self) -> GatewayError | None:
        return self._http.unavailable()

    async def create_video(self, command: CreateVideoCommand) -> UpstreamVideo:
        aspect_ratio, resolution = SIZES[command.size]
        instance: dict[str, Any] = {"prompt": command.prompt}
        if command.image is not None:
            instance["image"] = {
                "bytesBase64Encoded": base64.b64encode(command.image.data).decode("ascii"),
                "mimeType": command.image.content_type,
            }
        body = {
            "instances": [instance],
            "parameters": {
                "durationSeconds": int(command.seconds),
                "aspectRatio": aspect_ratio,
                "resolution": resolution,
                "sampleCount": 1,
            },
        }
        response = await self._http.send(
            "POST", f"models/{command.model}:predictLongRunning", kind=CallKind.PAID, json=body
        )
        try:
            name = _payload(response).get("name")
        except UpstreamError:
            name = None  # not JSON: the render may still have started, so the same answer as a nameless one
        if not isinstance(name, str) or not OPERATION_NAME.fullmatch(name):
            # The render may have started: without its name we cannot follow it. Never re-sent.
            raise UpstreamError(
                "Upstream accepted the render but answered without a usable operation name.",
                code="upstream_bad_response",
                headers={"x-should-retry": "false"},
            )
        return UpstreamVideo(
            id=name,
            model=command.model,
            status="in_progress",
            progress=None,
            created_at=int(time.time()),
            prompt=command.prompt,
            size=command.size,
            seconds=command.seconds,
        )

    async def remix_video(self, upstream_id: str, *, prompt: str) -> UpstreamVideo:
        raise UpstreamError(f"{PROVIDER} cannot remix a video.", code="unsupported_by_provider")

    async def retrieve_video(self, upstream_id: str) -> UpstreamVideo:
        operation = await self._operation(upstream_id)
        return self._video_of(upstream_id, operation)

    async def delete_video(self, upstream_id: str) -> None:
        # The Gemini API has no video delete; its files go after two days. Ours go with the video.
        return None

    async def recent_videos(self, *, created_since: int) -> list[UpstreamVideo] | None:
        # Veo's operations cannot be listed through the Gemini API: a create cut off before its operation name
        # came back cannot be found again, and is settled as `upstream_submission_unknown`.
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
        operation = await self._operation(upstream_id)
        uri = _sample_uri(operation)
        if uri is None:
            raise ResourceNotFound("Upstream has no video for this operation.", code="not_found")
        target = urlsplit(uri)
        if target.netloc != self._host or target.scheme not in ("https", "http"):
            # The key goes only to the API's own host; a sample elsewhere would take it with it.
            raise UpstreamError(
                "Upstream named a video file on another host; not fetched.", code="redirect_not_allowed"
            )
        async with self._http.stream(uri, headers={"accept": "video/mp4"}) as response:
            yield response

    # ----- internals ----------------------------------------------------------------------------

    async def _operation(self, upstream_id: str) -> dict[str, Any]:
        if not OPERATION_NAME.fullmatch(upstream_id):
            raise ResourceNotFound("Not a Gemini operation name.", code="not_found")
        return _payload(await self._http.send("GET", upstream_id, kind=CallKind.READ))

    def _video_of(self, name: str, operation: Mapping[str, Any]) -> UpstreamVideo:
        model = name.split("/")[1]
        # size/seconds/prompt are not echoed by Google; the gateway keeps its own from the create.
        fields: dict[str, Any] = {"id": name, "model": model, "size": "", "seconds": "", "progress": None}
        created = _create_time(operation)
        now = int(time.time())
        fields["created_at"] = created or now
        if operation.get("done") is not True:
            return UpstreamVideo(status="in_progress", **fields)
        error = operation.get("error")
        if isinstance(error, dict):
            status = error.get("status")
            code = status.lower() if isinstance(status, str) and status else f"upstream_error_{error.get('code')}"
            return UpstreamVideo(
                status="failed",
                error=UpstreamVideoError(code=code, message=_reason(error.get("message") or "The render failed.")),
                **fields,
            )
        response = operation.get("response")
        generated = response.get("generateVideoResponse") if isinstance(response, dict) else None
        generated = generated if isinstance(generated, dict) else {}
        if _sample_uri(operation) is not None:
            # Google keeps the file two days from generation: counted from the create, to err early.
            return UpstreamVideo(
                status="completed",
                completed_at=now,
                expires_at=int((created or now) + self._retention),
                **{**fields, "progress": 100},
            )
        filtered = generated.get("raiMediaFilteredCount")
        if isinstance(filtered, int) and filtered > 0:
            reasons = generated.get("raiMediaFilteredReasons")
            text = (
                " ".join(str(reason) for reason in reasons)
                if isinstance(reasons, list) and reasons
                else "The video was blocked by the provider's safety filters."
            )
            return UpstreamVideo(
                status="failed", error=UpstreamVideoError(code="moderation_blocked", message=_reason(text)), **fields
            )
        return UpstreamVideo(
            status="failed",
            error=UpstreamVideoError(code="upstream_no_output", message="Upstream finished without a video."),
            **fields,
        )


def _payload(response: httpx.Response) -> dict[str, Any]:
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if not isinstance(payload, dict):
        raise UpstreamError("Upstream answered with something that is not a JSON object.", code="upstream_bad_response")
    return payload


def _sample_uri(operation: Mapping[str, Any]) -> str | None:
    response = operation.get("response")
    generated = response.get("generateVideoResponse") if isinstance(response, dict) else None
    samples = generated.get("generatedSamples") if isinstance(generated, dict) else None
    if not isinstance(samples, list) or not samples or not isinstance(samples[0], dict):
        return None
    video = samples[0].get("video")
    uri = video.get("uri") if isinstance(video, dict) else None
    return uri if isinstance(uri, str) and uri else None


def _create_time(operation: Mapping[str, Any]) -> int | None:
    metadata = operation.get("metadata")
    value = metadata.get("createTime") if isinstance(metadata, dict) else None
    if not isinstance(value, str):
        return None
    try:
        return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    except ValueError:
        return None
