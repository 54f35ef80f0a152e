"""The generated files of the Gemini simulator: the key-protected download URI, its redirect, and the bytes.

`GET /v1beta/files/{id}:download?alt=media` (API key required) answers a 302 to `/download/{id}?token=...`
on the same server, a stand-in for the storage host Google redirects to; that target needs no key, the
per-file token authorises it. The body is streamed in chunks (files read off the event loop, synthetic
MP4s generated on the fly) with an exact `Content-Length`, and the download fault knobs (throttle,
truncation) are applied here. A file is gone (404) once its operation's ttl has passed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import RedirectResponse, StreamingResponse

from app.simulator.content import Asset
from app.simulator.gemini.errors import not_found, permission_denied
from app.simulator.gemini.faults import GeminiFaults
from app.simulator.gemini.state import Operation
from app.simulator.render import VIDEO_FILE

MEDIA_TYPE = "video/mp4"
# How often a throttled stream sends; smaller pieces keep the rate smooth for slow-download tests.
THROTTLE_TICKS_PER_SECOND = 20
DOWNLOAD_ROUTE = "serve_download"


def check_available(operation: Operation, now: float) -> None:
    if operation.is_expired(now) or (operation.directory is None and operation.synthetic_bytes is None):
        raise not_found(f"File {operation.file_id} not found.")


def redirect(request: Request, operation: Operation, faults: GeminiFaults) -> RedirectResponse:
    url = request.url_for(DOWNLOAD_ROUTE, file_id=operation.file_id).include_query_params(
        token=operation.download_token
    )
    if faults.content_redirect_host:
        url = url.replace(hostname=faults.content_redirect_host)
    return RedirectResponse(str(url), status_code=302)


def check_token(operation: Operation, token: str) -> None:
    if not hmac.compare_digest(token.encode(), operation.download_token.encode()):
        raise permission_denied("The download token is not valid for this file.")


def locate(operation: Operation) -> Asset:
    if operation.synthetic_bytes is not None:
        return Asset(MEDIA_TYPE, operation.synthetic_bytes, None, operation.synthetic_bytes)
    assert operation.directory is not None
    path = operation.directory / VIDEO_FILE
    try:
        size = path.stat().st_size
    except FileNotFoundError as exc:  # expired and removed between the lookup and now
        raise not_found(f"File {operation.file_id} not found.") from exc
    return Asset(MEDIA_TYPE, size, path)


def file_response(asset: Asset, faults: GeminiFaults) -> StreamingResponse:
    """The MP4, shaped by the download faults in force."""
    body = _shaped(asset.chunks(), limit=faults.take_truncation(), bytes_per_second=faults.content_bytes_per_second)
    return StreamingResponse(body, media_type=asset.media_type, headers={"content-length": str(asset.size)})


async def _shaped(chunks: AsyncIterator[bytes], *, limit: int | None, bytes_per_second: int) -> AsyncIterator[bytes]:
    """Stop after `limit` bytes (truncation) and pace the body at `bytes_per_second` (throttling)."""
    sent = 0
    async with contextlib.aclosing(chunks):  # type: ignore[type-var]  # async generators have aclose
        async for chunk in chunks:
            if limit is not None:
                chunk = chunk[: limit - sent]
            step = max(1, bytes_per_second // THROTTLE_TICKS_PER_SECOND) if bytes_per_second > 0 else len(chunk)
            for start in range(0, len(chunk), max(1, step)):
                piece = chunk[start : start + step]
                if bytes_per_second > 0:
                    await asyncio.sleep(len(piece) / bytes_per_second)
                yield piece
                sent += len(piece)
            if limit is not None and sent >= limit:
                return
