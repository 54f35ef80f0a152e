"""Uploaded videos (an edit's or extension's source, a character's clip): bounded, and proven a real MP4.

The bytes are judged, not the label: an ISO base media file (`ftyp` first) that PyAV opens as MP4 and whose
first video frame decodes, with a positive duration. Everything is read from memory (the upload is already
bounded by `VG_API__MAX_VIDEO_BYTES`), in a worker thread: demuxing and decoding are blocking, CPU-bound work
that must not stall the event loop. Nothing here calls upstream; a refusal happens before any paid call.
"""

from __future__ import annotations

import asyncio
import io

import av

from app.core.errors import PayloadTooLarge, UnprocessableInput, UnsupportedMediaType
from app.upstream.schemas import VideoUpload

# Longest source we take (the contract's longest video, 120 s stitched, with room to spare): a bound on what
# one request can make the gateway decode, and on what is sent upstream.
MAX_VIDEO_SECONDS = 600
# What PyAV's mov/mp4 demuxer calls itself.
MP4_FORMAT = "mp4"


def too_large(limit: int, *, param: str) -> PayloadTooLarge:
    return PayloadTooLarge(f"'{param}' is larger than {limit} bytes.", param=param, code="video_too_large")


async def check_video(data: bytes, *, filename: str | None, max_bytes: int, param: str = "video") -> VideoUpload:
    """The upload if it is a real MP4 with a decodable video stream; else a 413, 415 or 422 naming `param`."""
    if len(data) > max_bytes:
        raise too_large(max_bytes, param=param)
    return await asyncio.to_thread(_probe, data, filename=filename, param=param)


def _probe(data: bytes, *, filename: str | None, param: str) -> VideoUpload:
    not_mp4 = UnsupportedMediaType(
        f"'{param}' must be an MP4 video (video/mp4).", param=param, code="unsupported_video_type"
    )
    if len(data) < 12 or data[4:8] != b"ftyp":
        raise not_mp4
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if MP4_FORMAT not in container.format.name.split(","):
                raise not_mp4
            if not container.streams.video:
                raise UnprocessableInput(f"'{param}' has no video stream.", param=param, code="invalid_video")
            stream = container.streams.video[0]
            frame = next(container.decode(stream), None)
            if frame is None:
                raise UnprocessableInput(f"'{param}' has no decodable frame.", param=param, code="invalid_video")
            width, height = frame.width, frame.height
            duration = _duration_seconds(container, stream)
    except (av.error.FFmpegError, StopIteration, ValueError, OSError) as exc:
        raise UnprocessableInput(
            f"'{param}' could not be decoded as an MP4 video.", param=param, code="invalid_video"
        ) from exc
    if not 0 < duration <= MAX_VIDEO_SECONDS:
        raise UnprocessableInput(
            f"'{param}' must last between 0 and {MAX_VIDEO_SECONDS} seconds.", param=param, code="invalid_video"
        )
    name = filename if filename and filename.isprintable() and len(filename) <= 200 else "video.mp4"
    return VideoUpload(data=data, filename=name, width=width, height=height, duration_seconds=duration)


def _duration_seconds(container: av.container.InputContainer, stream: av.video.stream.VideoStream) -> float:
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return 0.0


def whole_seconds(upload: VideoUpload) -> str:
    """The upload's length as the contract writes `seconds`: whole seconds, at least 1."""
    return str(max(1, round(upload.duration_seconds)))
