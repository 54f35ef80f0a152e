"""Real asset files for simulated videos: an H.264 MP4, a WebP thumbnail and a JPEG spritesheet.

Everything here is synchronous and CPU-bound; the runtime calls `render_assets` in a bounded thread pool.
Each frame is drawn with Pillow (the prompt text plus a bouncing ball, on the reference image when one was
given, since upstream makes it the first frame) and encoded with libx264's `ultrafast` preset, so a test
video takes well under a second. Synthetic mode skips the encoder: the MP4 is a valid `ftyp` box followed by
one padding `mdat` box, produced in chunks so a multi-gigabyte asset never sits in memory or on disk.
`H264Writer` and `Previews` (the thumbnail and spritesheet) also serve `app.simulator.derive`, which makes
edited and extended videos from a source's frames.
"""

from __future__ import annotations

import hashlib
import io
import math
import struct
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av
from PIL import Image, ImageDraw, ImageFont

VIDEO_FILE = "video.mp4"
THUMBNAIL_FILE = "thumbnail.webp"
SPRITESHEET_FILE = "spritesheet.jpg"
SPRITESHEET_COLUMNS = 4
SPRITESHEET_TILES = 16
SPRITESHEET_TILE_WIDTH = 160
PROMPT_PREVIEW_CHARS = 400

# isom brand with the usual compatible brands; 32 bytes, as ffmpeg writes for plain H.264 MP4s.
FTYP_BOX = struct.pack(">I4s4sI4s4s4s4s", 32, b"ftyp", b"isom", 0x200, b"isom", b"iso2", b"avc1", b"mp41")
_BOX_HEADER = 8
_LARGE_BOX_HEADER = 16
_MAX_32BIT_BOX = 0xFFFFFFFF


class RenderCancelled(Exception):
    """The video was deleted or the simulator is stopping; the partial files are discarded."""


@dataclass(frozen=True, slots=True)
class RenderJob:
    prompt: str
    width: int
    height: int
    seconds: int
    fps: int
    reference_image: bytes | None = None
    # When set, the MP4 is synthetic (see `iter_synthetic_mp4`) and only the images are drawn.
    synthetic_bytes: int | None = None

    @property
    def frame_count(self) -> int:
        return self.seconds * self.fps


class FramePainter:
    """Draws frame `i` of a job: a static layer (background + prompt) drawn once, plus a moving ball."""

    def __init__(self, job: RenderJob) -> None:
        self._job = job
        self._base = self._draw_base()
        self._radius = max(8, min(job.width, job.height) // 12)
        self._font = ImageFont.load_default(size=max(12, job.width // 30))

    def _draw_base(self) -> Image.Image:
        job = self._job
        if job.reference_image is not None:
            with Image.open(io.BytesIO(job.reference_image)) as reference:
                base = reference.convert("RGB").resize((job.width, job.height))
        else:
            # A colour derived from the prompt so different videos look different.
            digest = hashlib.sha256(job.prompt.encode()).digest()
            base = Image.new("RGB", (job.width, job.height), (digest[0] // 2, digest[1] // 2, digest[2] // 2))
        draw = ImageDraw.Draw(base)
        font_size = max(12, job.width // 24)
        font = ImageFont.load_default(size=font_size)
        # Roughly 0.6 em per character in the default font.
        chars_per_line = max(10, job.width // max(1, int(font_size * 0.6)))
        text = "\n".join(textwrap.wrap(job.prompt[:PROMPT_PREVIEW_CHARS], chars_per_line)[:12])
        draw.multiline_text((job.width // 20, job.height // 20), text, fill=(255, 255, 255), font=font)
        return base

    def frame(self, index: int) -> Image.Image:
        job = self._job
        image = self._base.copy()
        draw = ImageDraw.Draw(image)
        progress = index / max(1, job.frame_count - 1)
        margin = self._radius
        x = margin + (job.width - 2 * margin) * progress
        y = job.height / 2 + (job.height / 3 - margin) * math.sin(progress * 4 * math.pi)
        r = self._radius
        draw.ellipse((x - r, y - r, x + r, y + r), fill=(255, 200, 40), outline=(0, 0, 0), width=3)
        seconds = index / job.fps
        draw.text((job.width // 20, job.height - job.height // 10), f"t={seconds:.2f}s", font=self._font)
        return image


def render_assets(job: RenderJob, directory: Path, should_stop: Callable[[], bool]) -> None:
    """Write the MP4 (unless synthetic), the thumbnail and the spritesheet into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    painter = FramePainter(job)
    previews = Previews(job.frame_count)
    if job.synthetic_bytes is None:
        with H264Writer(directory / VIDEO_FILE, job.width, job.height, job.fps) as writer:
            for index in range(job.frame_count):
                if should_stop():
                    raise RenderCancelled
                image = painter.frame(index)
                previews.offer(index, image)
                writer.write(image)
    else:
        for index in previews.wanted:
            previews.offer(index, painter.frame(index))
    previews.save(directory)


class H264Writer:
    """An H.264 MP4 at `fps` written one RGB frame at a time (libx264 `ultrafast`, yuv420p: even sizes only)."""

    def __init__(self, path: Path, width: int, height: int, fps: int) -> None:
        self._container = av.open(str(path), mode="w", format="mp4")
        self._stream = self._container.add_stream("libx264", rate=fps)
        self._stream.width = width
        self._stream.height = height
        self._stream.pix_fmt = "yuv420p"
        self._stream.options = {"preset": "ultrafast"}

    def write(self, image: Image.Image) -> None:
        frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def __enter__(self) -> H264Writer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        try:
            if exc_type is None:  # flush the encoder only for a whole video; a cancelled one is discarded
                for packet in self._stream.encode(None):
                    self._container.mux(packet)
        finally:
            self._container.close()


class Previews:
    """The thumbnail (the middle frame) and the spritesheet tiles of a video, kept as its frames go by."""

    def __init__(self, frame_count: int) -> None:
        self._tile_indexes = _spritesheet_indexes(frame_count)
        self._thumbnail_index = frame_count // 2
        self._tiles: list[Image.Image] = []
        self._thumbnail: Image.Image | None = None

    @property
    def wanted(self) -> list[int]:
        """The frames the previews are made of, in order (all a synthetic render draws)."""
        return sorted(self._tile_indexes | {self._thumbnail_index})

    def offer(self, index: int, image: Image.Image) -> None:
        """Frame `index` of the video; kept if a preview needs it (frames must be offered in order)."""
        if index in self._tile_indexes:
            self._tiles.append(_tile(image))
        if index == self._thumbnail_index:
            self._thumbnail = image

    def save(self, directory: Path) -> None:
        assert self._thumbnail is not None and self._tiles, "previews saved before their frames were offered"
        self._thumbnail.save(directory / THUMBNAIL_FILE, format="WEBP", quality=80)
        _spritesheet(self._tiles).save(directory / SPRITESHEET_FILE, format="JPEG", quality=80)


def _spritesheet_indexes(frame_count: int) -> set[int]:
    count = min(SPRITESHEET_TILES, frame_count)
    return {round(i * (frame_count - 1) / max(1, count - 1)) for i in range(count)}


def _tile(image: Image.Image) -> Image.Image:
    height = max(1, round(image.height * SPRITESHEET_TILE_WIDTH / image.width))
    return image.resize((SPRITESHEET_TILE_WIDTH, height))


def _spritesheet(tiles: list[Image.Image]) -> Image.Image:
    columns = min(SPRITESHEET_COLUMNS, len(tiles))
    rows = math.ceil(len(tiles) / columns)
    tile_width, tile_height = tiles[0].size
    sheet = Image.new("RGB", (columns * tile_width, rows * tile_height))
    for position, tile in enumerate(tiles):
        sheet.paste(tile, ((position % columns) * tile_width, (position // columns) * tile_height))
    return sheet


def synthetic_mp4_header(total_bytes: int) -> bytes:
    """The leading bytes of a synthetic MP4 of `total_bytes`: `ftyp`, then the header of a padding `mdat`."""
    if total_bytes <= len(FTYP_BOX):
        return FTYP_BOX[:total_bytes]
    rest = total_bytes - len(FTYP_BOX)
    if rest < _BOX_HEADER:
        return FTYP_BOX  # too little room for a box header; the tail is bare zero padding
    if rest <= _MAX_32BIT_BOX:
        return FTYP_BOX + struct.pack(">I4s", rest, b"mdat")
    # size == 1 means a 64-bit "largesize" follows the type (ISO/IEC 14496-12 §4.2).
    return FTYP_BOX + struct.pack(">I4sQ", 1, b"mdat", rest)


def iter_synthetic_mp4(total_bytes: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield a synthetic MP4 of exactly `total_bytes`, holding at most one chunk in memory."""
    header = synthetic_mp4_header(total_bytes)
    yield header
    remaining = total_bytes - len(header)
    zeros = bytes(min(chunk_size, remaining)) if remaining > 0 else b""
    while remaining > 0:
        piece = zeros if remaining >= len(zeros) else zeros[:remaining]
        yield piece
        remaining -= len(piece)
