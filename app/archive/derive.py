"""Image variants made from the archived MP4: the thumbnail and the spritesheet, for providers that serve only video.

This module owns the choice of frames, the layout and the encoding of the two derived images; storage owns
the bytes in S3. The MP4 is read straight from S3 through `ArchiveStorage.open_seekable` (ranged GETs, one
small read-ahead window), never held whole in memory nor on disk: an MP4 without faststart keeps its index
(`moov`) at the end, so the demuxer seeks there first, then back to the keyframes before the frames we want.
Decoding stops at the last frame needed, and GOPs holding no wanted frame are skipped by seeking, so they
are not fetched either.

The images look like the simulator's own (app/simulator/render.py): the thumbnail is the middle frame at the
video's size, the spritesheet a grid of evenly spaced frames, same columns, tile count, tile width, formats
and quality. The app may not import the simulator, so its shape is restated here.

Decoding and boto3 both block: `derive_image` runs the work in a worker thread. `thumbnail_from` and
`spritesheet_from` are the pure parts, taking any seekable binary file.
"""

from __future__ import annotations

import asyncio
import bisect
import io
import logging
import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol

from PIL import Image

from app.models.asset import Variant

if TYPE_CHECKING:
    from av.container import InputContainer
    from av.video.frame import VideoFrame
    from av.video.stream import VideoStream

    from app.archive.storage import ArchiveStorage

logger = logging.getLogger(__name__)

# These mirror the simulator's spritesheet shape (app/simulator/render.py), so a derived spritesheet and a
# simulated one have the same grid and size for the same video; change them together.
SPRITESHEET_COLUMNS = 4
SPRITESHEET_TILES = 16
SPRITESHEET_TILE_WIDTH = 160
# The simulator's encoder settings too: similar weight and look for both sources of the same variant.
THUMBNAIL_WEBP_QUALITY = 80
SPRITESHEET_JPEG_QUALITY = 80


class DerivationFailed(Exception):
    """The archived file is not a decodable MP4 with a video track; retrying will not change that."""


class SeekableSource(Protocol):
    """What the decoder needs of a file: RangedObjectReader over S3, or io.BytesIO and open files in tests."""

    def read(self, size: int = ..., /) -> bytes | None: ...

    def seek(self, offset: int, whence: int = ..., /) -> int: ...

    def tell(self) -> int: ...


async def derive_image(storage: ArchiveStorage, *, video_key: str, variant: Variant) -> bytes:
    """The `variant` image (thumbnail or spritesheet) made from the MP4 at `video_key`, as file bytes.

    The bytes carry the variant's format (WebP, JPEG), so `upload_stream` accepts them for that variant.
    Raises ValueError for a variant that is not an image, DerivationFailed when the MP4 does not decode,
    ObjectNotFound or StorageError when S3 fails (those are worth a retry; DerivationFailed is not).
    """
    make = _MAKERS.get(variant)
    if make is None:
        raise ValueError(f"only images are derived from the video, not the {variant.value}")
    reader = await storage.open_seekable(video_key)

    def run() -> bytes:
        # Closed in the thread that reads it: a cancelled caller cannot close it under a running decode.
        with reader:
            image = make(reader)
        logger.info(
            "derived the %s from %s: %d of %d bytes read in %d ranged GETs",
            variant.value,
            video_key,
            reader.bytes_fetched,
            reader.size,
            reader.requests,
        )
        return image

    return await asyncio.to_thread(run)


def thumbnail_from(source: SeekableSource) -> bytes:
    """A WebP of the MP4's middle frame (the simulator's choice), at the video's own width and height."""
    with _open_video(source) as (container, stream):
        plan = _FramePlan.of(stream)
        size = (stream.codec_context.width, stream.codec_context.height)
        [frame] = _frames_at(container, stream, plan, [plan.count // 2])
        image = _to_image(frame)
        if image.size != size:
            image = image.resize(size)
    out = io.BytesIO()
    image.save(out, format="WEBP", quality=THUMBNAIL_WEBP_QUALITY)
    return out.getvalue()


def spritesheet_from(source: SeekableSource) -> bytes:
    """A JPEG grid of up to SPRITESHEET_TILES evenly spaced frames, first and last included, in time order."""
    with _open_video(source) as (container, stream):
        plan = _FramePlan.of(stream)
        # Each frame shrinks to a tile as soon as it is decoded: at most one full-size frame is held.
        tiles = [
            _tile(_to_image(frame)) for frame in _frames_at(container, stream, plan, spritesheet_indexes(plan.count))
        ]
    out = io.BytesIO()
    _grid(tiles).save(out, format="JPEG", quality=SPRITESHEET_JPEG_QUALITY)
    return out.getvalue()


def spritesheet_indexes(frame_count: int) -> list[int]:
    """The frames of the grid, ascending: the simulator's formula, so both pick the same frames."""
    count = min(SPRITESHEET_TILES, frame_count)
    return sorted({round(i * (frame_count - 1) / max(1, count - 1)) for i in range(count)})


_MAKERS: dict[Variant, Callable[[SeekableSource], bytes]] = {
    Variant.THUMBNAIL: thumbnail_from,
    Variant.SPRITESHEET: spritesheet_from,
}


@contextmanager
def _open_video(source: SeekableSource) -> Iterator[tuple[InputContainer, VideoStream]]:
    """The MP4's first video track, with FFmpeg's errors turned into DerivationFailed."""
    # Imported here, not with the module: PyAV and its FFmpeg libraries are about 20 MiB of a worker's resident
    # memory, and a worker whose providers all serve their images never decodes anything.
    import av

    try:
        # The MP4 demuxer by name, not by probing: the archive holds MP4s, and a probe would happily take a
        # JPEG or some other format for a video and "decode" it.
        container = av.open(source, mode="r", format="mp4")
    except av.FFmpegError as error:
        raise DerivationFailed(f"not a readable MP4: {error}") from error
    try:
        if not container.streams.video:
            raise DerivationFailed("the MP4 has no video track")
        yield container, container.streams.video[0]
    except av.FFmpegError as error:
        # Seeking or decoding failed half-way: a damaged file. A StorageError from the reader is no FFmpegError
        # (PyAV re-raises whatever the read callback raised), so S3 failures pass through as themselves.
        raise DerivationFailed(f"the MP4 does not decode: {error}") from error
    finally:
        container.close()


class _FramePlan:
    """Frame numbers to timestamps: how many frames the track has and where frame `i` sits in time_base units."""

    def __init__(self, *, count: int, start: int, frame_duration: Fraction) -> None:
        self.count = count
        self.start = start
        self.frame_duration = frame_duration

    @classmethod
    def of(cls, stream: VideoStream) -> _FramePlan:
        time_base = stream.time_base
        # An MP4 states its sample count (stsz); the demuxer's index is the fallback for one that does not.
        count = stream.frames or len(_index_entries(stream))
        if time_base is None or count <= 0:
            raise DerivationFailed("the video track states no frames or no time base")
        if stream.average_rate:
            frame_duration = 1 / (stream.average_rate * time_base)
        elif stream.duration:
            frame_duration = Fraction(stream.duration, count)
        else:
            raise DerivationFailed("the video track states neither a frame rate nor a duration")
        return cls(count=count, start=stream.start_time or 0, frame_duration=frame_duration)

    def pts_of(self, index: int) -> int:
        return self.start + math.floor(index * self.frame_duration)


def _index_entries(stream: VideoStream) -> list[tuple[int, bool]]:
    # (timestamp, is_keyframe) from the demuxer's index (the whole sample table, for an MP4). Older PyAV
    # releases, which pyproject still allows, do not expose it: then nothing is known and nothing is skipped.
    entries = getattr(stream, "index_entries", None)
    if entries is None:
        return []
    return [(entry.timestamp, entry.is_keyframe) for entry in entries if not entry.is_discard]


def _frames_at(
    container: InputContainer, stream: VideoStream, plan: _FramePlan, indexes: list[int]
) -> Iterator[VideoFrame]:
    """Frame `i` for each of `indexes` (ascending), decoding as little as it can.

    Frame `i` is the first frame shown at or after its timestamp; an index past the end gets the last frame.
    Between targets it keeps decoding forward unless a keyframe lies between where it is and the next target:
    then seeking there skips the frames in between (and the S3 reads for them). Without an index it decodes
    straight through, which is always correct.
    """
    keyframes = sorted(timestamp for timestamp, is_keyframe in _index_entries(stream) if is_keyframe)
    # Half a frame of slack: a timestamp rounded by the muxer still counts as the frame it belongs to.
    slack = plan.frame_duration / 2
    frames: Iterator[VideoFrame] | None = None
    current: VideoFrame | None = None  # the last frame decoded
    exhausted = False
    for index in indexes:
        target = plan.pts_of(index)
        if frames is None or (not exhausted and _seek_pays(keyframes, current, target)):
            container.seek(target, stream=stream, backward=True)
            frames = container.decode(stream)
            current = None
            exhausted = False
        while not exhausted and (current is None or _pts(current) < target - slack):
            try:
                current = next(frames)
            except StopIteration:
                exhausted = True
        if current is None:
            raise DerivationFailed(f"frame {index} of {plan.count} does not decode")
        yield current


def _seek_pays(keyframes: list[int], current: VideoFrame | None, target: int) -> bool:
    # Worth it when the keyframe a seek would land on comes after the frame we are at: everything between
    # is skipped. Otherwise the seek would land behind us and decode again what we already passed.
    if current is None:
        return True
    at = bisect.bisect_right(keyframes, target) - 1
    return at >= 0 and keyframes[at] > _pts(current)


def _pts(frame: VideoFrame) -> int:
    if frame.pts is None:
        raise DerivationFailed("a decoded frame carries no timestamp")
    return frame.pts


def _to_image(frame: VideoFrame) -> Image.Image:
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
    return image


def _tile(image: Image.Image) -> Image.Image:
    height = max(1, round(image.height * SPRITESHEET_TILE_WIDTH / image.width))
    return image.resize((SPRITESHEET_TILE_WIDTH, height))


def _grid(tiles: list[Image.Image]) -> Image.Image:
    columns = min(SPRITESHEET_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    tile_width, tile_height = tiles[0].size
    sheet = Image.new("RGB", (columns * tile_width, rows * tile_height))
    for position, tile in enumerate(tiles):
        sheet.paste(tile, ((position % columns) * tile_width, (position // columns) * tile_height))
    return sheet
