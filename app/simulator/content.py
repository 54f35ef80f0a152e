"""Serving a finished video's assets, with the content fault knobs applied.

Both `GET /v1/videos/{id}/content` and the redirect target `GET /_sim/files/{id}/{variant}` end here. Bodies
are streamed in chunks (files read off the event loop, synthetic MP4s generated on the fly) with an exact
`Content-Length`, so clients can tell a truncated body from a complete one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from starlette.datastructures import URL
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse

from app.simulator.errors import invalid, not_found
from app.simulator.faults import Faults
from app.simulator.render import SPRITESHEET_FILE, THUMBNAIL_FILE, VIDEO_FILE, iter_synthetic_mp4
from app.simulator.state import VideoRecord

Variant = Literal["video", "thumbnail", "spritesheet"]
VARIANTS: dict[str, tuple[str, str]] = {
    "video": (VIDEO_FILE, "video/mp4"),
    "thumbnail": (THUMBNAIL_FILE, "image/webp"),
    "spritesheet": (SPRITESHEET_FILE, "image/jpeg"),
}
CHUNK_BYTES = 64 * 1024
# How often a throttled stream sends; smaller pieces keep the rate smooth for slow-download tests.
THROTTLE_TICKS_PER_SECOND = 20
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


@dataclass(frozen=True, slots=True)
class Asset:
    media_type: str
    size: int
    path: Path | None  # None: a synthetic MP4 generated on the fly
    synthetic_bytes: int | None = None

    def chunks(self) -> AsyncIterator[bytes]:
        if self.path is not None:
            return _file_chunks(self.path)
        assert self.synthetic_bytes is not None
        return _synthetic_chunks(self.synthetic_bytes)


def locate_asset(record: VideoRecord, directory: Path, variant: Variant) -> Asset:
    filename, media_type = VARIANTS[variant]
    if variant == "video" and record.synthetic_bytes is not None:
        return Asset(media_type, record.synthetic_bytes, None, record.synthetic_bytes)
    path = directory / filename
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:  # deleted between the lookup and now
        raise not_found(f"Video with id '{record.id}' not found.", param="video_id") from exc
    return Asset(media_type, size, path)


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
    body = _shaped(asset.chunks(), limit=limit, bytes_per_second=faults.content_bytes_per_second)
    return StreamingResponse(body, media_type=asset.media_type, headers={"content-length": str(asset.size)})


async def _file_chunks(path: Path) -> AsyncIterator[bytes]:
    handle = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(handle.read, CHUNK_BYTES):
            yield chunk
    finally:
        handle.close()


async def _synthetic_chunks(total: int) -> AsyncIterator[bytes]:
    for chunk in iter_synthetic_mp4(total, CHUNK_BYTES):
        yield chunk


async def _shaped(chunks: AsyncIterator[bytes], *, limit: int | None, bytes_per_second: int) -> AsyncIterator[bytes]:
    """Apply truncation (stop after `limit` bytes) and throttling (`bytes_per_second`) to a body."""
    sent = 0
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]  # async generators have aclose
        async for chunk in chunks:
            if limit is not None:
                chunk = chunk[: limit - sent]
            if bytes_per_second <= 0:
                pieces = [chunk]
            else:
                step = max(1, bytes_per_second // THROTTLE_TICKS_PER_SECOND)
                pieces = [chunk[i : i + step] for i in range(0, len(chunk), step)]
            for piece in pieces:
                if bytes_per_second > 0:
                    await asyncio.sleep(len(piece) / bytes_per_second)
                yield piece
                sent += len(piece)
            if limit is not None and sent >= limit:
                return
