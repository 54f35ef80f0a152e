"""Serving a finished video's assets, with the content fault knobs applied.

Both `GET /v1/videos/{id}/content` and the redirect target `GET /_sim/files/{id}/{variant}` end here. This
module says which file a request means, when OpenAI answers 404 instead, and applies the OpenAI-only content
faults (the redirect, the HTML error page); the bytes go out through `app.simulator.streaming`, throttled and
truncated as the knobs say.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from app.simulator.errors import invalid, not_found
from app.simulator.faults import Faults
from app.simulator.render import SPRITESHEET_FILE, THUMBNAIL_FILE, VIDEO_FILE
from app.simulator.state import VideoRecord
from app.simulator.streaming import Asset, stream

Variant = Literal["video", "thumbnail", "spritesheet"]
VARIANTS: dict[str, tuple[str, str]] = {
    "video": (VIDEO_FILE, "video/mp4"),
    "thumbnail": (THUMBNAIL_FILE, "image/webp"),
    "spritesheet": (SPRITESHEET_FILE, "image/jpeg"),
}
HTML_ERROR_PAGE = (
    "<!DOCTYPE html><html><head><title>502 Bad Gateway</title></head>"
    "<body><h1>Bad Gateway</h1><p>The upstream storage is temporarily unavailable.</p></body></html>"
)


def check_variant(value: str) -> Variant:
    if value not in VARIANTS:
        raise invalid(
            f"Invalid value: '{value}'. Supported values are: 'video', 'thumbnail', and 'spritesheet'.",
            param="variant",
        )
    return value  # type: ignore[return-value]  # narrowed by the membership test above


def check_downloadable(record: VideoRecord, now: float) -> None:
    """404s the real API gives for content that does not exist (yet, or any more)."""
    if record.status in ("queued", "in_progress"):
        raise not_found(f"Video is not ready yet, use GET /v1/videos/{record.id} to check status.", param="video_id")
    if record.status == "failed":
        raise not_found(f"Video '{record.id}' failed and has no content.", param="video_id")
    if record.is_expired(now):
        raise not_found(f"The content of video '{record.id}' has expired.", param="video_id")


def locate_asset(record: VideoRecord, directory: Path, variant: Variant) -> Asset:
    filename, media_type = VARIANTS[variant]
    if variant == "video" and record.synthetic_bytes is not None:
        return Asset.synthetic(media_type, record.synthetic_bytes)
    try:
        return Asset.on_disk(media_type, directory / filename)
    except FileNotFoundError as exc:  # deleted between the lookup and now
        raise not_found(f"Video with id '{record.id}' not found.", param="video_id") from exc


def redirect_url(request: Request, record: VideoRecord, variant: Variant, host: str | None) -> URL:
    url = request.url_for("serve_file", video_id=record.id, variant=variant).include_query_params(
        token=record.download_token
    )
    return url.replace(hostname=host) if host else url


def content_response(
    request: Request, record: VideoRecord, asset: Asset, variant: Variant, faults: Faults, *, redirected: bool
) -> Response:
    """The answer to a content request, shaped by the fault knobs in force."""
    if faults.content_redirect and not redirected:
        return RedirectResponse(
            str(redirect_url(request, record, variant, faults.content_redirect_host)), status_code=302
        )
    faulty = faults.take_content_fault()
    if faulty and faults.content_html_error:
        return HTMLResponse(HTML_ERROR_PAGE, status_code=200)
    limit = faults.content_truncate_after_bytes if faulty else None
    return stream(asset, truncate_after=limit, bytes_per_second=faults.content_bytes_per_second)
