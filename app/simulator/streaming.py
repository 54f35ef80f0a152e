"""Streaming a rendered file to a client, with the download faults both simulators share: throttle and truncation.

Bodies are streamed in chunks (files read off the event loop, synthetic MP4s generated on the fly) with an
exact `Content-Length`, so a client can tell a truncated body from a complete one. Which file a request
means, and when it is not there, is each provider's to say (`app.simulator.content`,
`app.simulator.gemini.files`).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from starlette.responses import StreamingResponse

from app.simulator.render import iter_synthetic_mp4

CHUNK_BYTES = 64 * 1024
# How often a throttled stream sends; smaller pieces keep the rate smooth for slow-download tests.
THROTTLE_TICKS_PER_SECOND = 20


@dataclass(frozen=True, slots=True)
class Asset:
    media_type: str
    size: int
    path: Path | None  # None: a synthetic MP4 generated on the fly
    synthetic_bytes: int | None = None

    @classmethod
    def synthetic(cls, media_type: str, size: int) -> Asset:
        return cls(media_type, size, None, size)

    @classmethod
    def on_disk(cls, media_type: str, path: Path) -> Asset:
        """The file at `path`; raises `FileNotFoundError` when it is gone (the caller's 404)."""
        return cls(media_type, path.stat().st_size, path)

    def chunks(self) -> AsyncIterator[bytes]:
        if self.path is not None:
            return _file_chunks(self.path)
        assert self.synthetic_bytes is not None
        return _synthetic_chunks(self.synthetic_bytes)


def stream(asset: Asset, *, truncate_after: int | None, bytes_per_second: int) -> StreamingResponse:
    """The asset's bytes, cut after `truncate_after` bytes (if set) and paced at `bytes_per_second` (if > 0).

    `Content-Length` always promises the whole file: a truncated body ends early (uvicorn then drops the
    connection), so a client sees an incomplete read.
    """
    body = _shaped(asset.chunks(), limit=truncate_after, bytes_per_second=bytes_per_second)
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
