"""Edited and extended videos: a source MP4's frames made into a new video's files; and the check of uploads.

OpenAI's `POST /v1/videos/edits` and `POST /v1/videos/extensions` start a new job from a source video, either a
completed simulator video (`{"id": ...}`) or an uploaded MP4. Its files are drawn here, on the render pool's
threads like `render.render_assets` (the event loop never decodes or encodes):
- an edit: every source frame colour-inverted, with the edit prompt drawn on a banner; the source's duration;
- an extension: the source's frames unchanged, then `extension_seconds` of newly drawn frames (the prompt and
  moving ball of `render.FramePainter`, on the source's last frame), one continuous H.264 MP4 lasting the sum.
Source frames are resampled to the simulator's `fps` (each output instant shows the latest source frame by
then), so the output lasts as long as the source whatever the source's frame rate. Both also get the WebP
thumbnail and JPEG spritesheet every video has (`render.Previews`).

Synthetic mode: a synthetic-mode source has no frames to decode (an `ftyp` box, then padding). An edit or
extension of one is synthetic too, made the way synthetic mode makes any video: an MP4 of as many bytes as its
source's, and a thumbnail and spritesheet drawn from the prompt at the video's size and duration; so a
benchmark running in synthetic mode can edit and extend. Likewise every edit or extension created while
synthetic mode is on is synthetic, whatever its source (no decoding, no encoding). The runtime draws those
with `render.render_assets`; only real sources come here.

`probe_mp4` checks an upload when the request arrives (in a worker thread): an MP4 (`ftyp` first) whose first
video frame decodes, of a sane size and length; its width and height are rounded down to even numbers, as
4:2:0 H.264 needs, and its duration to whole seconds for the `seconds` field.
"""

from __future__ import annotations

import io
import textwrap
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import av
from av.container import InputContainer
from av.video.frame import VideoFrame
from av.video.stream import VideoStream
from PIL import Image, ImageDraw, ImageFont, ImageOps

from app.simulator.errors import SimulatorError, invalid
from app.simulator.render import (
    VIDEO_FILE,
    FramePainter,
    H264Writer,
    Previews,
    RenderCancelled,
    RenderJob,
)
from app.simulator.state import Derivation

# An uploaded source video (edits, extensions, characters) may be at most this big; larger bodies get 413.
MAX_UPLOAD_BYTES = 64 * 1024 * 1024
# Bounds on an uploaded source, so one request cannot occupy a render thread for hours.
MIN_UPLOAD_SIDE = 16
MAX_UPLOAD_SIDE = 4096
MAX_UPLOAD_SECONDS = 120.0
# The demuxer FFmpeg picks for ISO base media files (MP4 and its QuickTime cousins).
MP4_DEMUXER = "mp4"
CAPTION_PREVIEW_CHARS = 200
# Frames whose timestamps differ by less than this are shown at the same output instant.
TIME_EPSILON = 1e-6


@dataclass(frozen=True, slots=True)
class UploadedVideo:
    """An uploaded MP4 that passed `probe_mp4`, with what the new job takes from it."""

    data: bytes
    width: int
    height: int
    # The duration rounded to whole seconds (at least 1), as the `seconds` field says it.
    seconds: int

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


@dataclass(frozen=True, slots=True)
class DeriveJob:
    """What a render thread needs to draw an edit or extension of a real (not synthetic) source."""

    derivation: Derivation
    prompt: str
    width: int
    height: int
    fps: int


def probe_mp4(data: bytes, *, param: str = "video") -> UploadedVideo:
    """Check an uploaded source video (400 naming `param` if it is no usable MP4) and measure it."""
    if data[4:8] != b"ftyp":
        raise _not_an_mp4(param, "it does not start with an MP4 'ftyp' box")
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if MP4_DEMUXER not in container.format.name.split(","):
                raise _not_an_mp4(param, f"its format is '{container.format.name}'")
            if not container.streams.video:
                raise _not_an_mp4(param, "it has no video stream")
            stream = container.streams.video[0]
            duration = _duration(container, stream)
            first = next(container.decode(stream), None)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise _not_an_mp4(param, "it does not decode") from exc
    if first is None:
        raise _not_an_mp4(param, "its video stream has no decodable frame")
    if duration is None or duration <= 0:
        raise _not_an_mp4(param, "its duration is unknown")
    if duration > MAX_UPLOAD_SECONDS:
        raise invalid(
            f"Invalid '{param}': the video lasts {duration:.1f} s; at most {MAX_UPLOAD_SECONDS:g} s is supported.",
            param=param,
        )
    width, height = first.width, first.height
    if not all(MIN_UPLOAD_SIDE <= side <= MAX_UPLOAD_SIDE for side in (width, height)):
        raise invalid(
            f"Invalid '{param}': the video is {width}x{height}; each side must be "
            f"{MIN_UPLOAD_SIDE} to {MAX_UPLOAD_SIDE} pixels.",
            param=param,
        )
    return UploadedVideo(
        data=data, width=width - width % 2, height=height - height % 2, seconds=max(1, round(duration))
    )


def _not_an_mp4(param: str, reason: str) -> SimulatorError:
    return invalid(
        f"Invalid '{param}': the file is not a supported video ({reason}); upload an MP4 with a video stream.",
        param=param,
        code="invalid_video_format",
    )


def derive_assets(job: DeriveJob, directory: Path, should_stop: Callable[[], bool]) -> None:
    """Write the edited or extended MP4, its thumbnail and its spritesheet into `directory`."""
    derivation = job.derivation
    directory.mkdir(parents=True, exist_ok=True)
    with closing(_open_source(derivation)) as container:
        stream = container.streams.video[0]
        duration = _duration(container, stream)
        if duration is None or duration <= 0:
            raise ValueError("the source video's duration is unknown")
        source_count = max(1, round(duration * job.fps))
        added_count = derivation.extension_seconds * job.fps
        previews = Previews(source_count + added_count)
        caption = _caption(job.prompt, job.width, job.height) if derivation.kind == "edit" else None
        last: Image.Image | None = None
        with H264Writer(directory / VIDEO_FILE, job.width, job.height, job.fps) as writer:
            for index, image in enumerate(_resampled(container, stream, job, source_count)):
                if should_stop():
                    raise RenderCancelled
                if caption is not None:
                    image = ImageOps.invert(image)
                    image.paste(caption, (0, 0), caption)
                previews.offer(index, image)
                writer.write(image)
                last = image
            if added_count:
                assert last is not None
                painter = FramePainter(
                    RenderJob(
                        prompt=job.prompt,
                        width=job.width,
                        height=job.height,
                        seconds=derivation.extension_seconds,
                        fps=job.fps,
                        # The new segment starts where the source ends, as a continuation does.
                        reference_image=_png(last),
                    )
                )
                for offset in range(added_count):
                    if should_stop():
                        raise RenderCancelled
                    image = painter.frame(offset)
                    previews.offer(source_count + offset, image)
                    writer.write(image)
    previews.save(directory)


def _open_source(derivation: Derivation) -> InputContainer:
    if derivation.source_bytes is not None:
        return av.open(io.BytesIO(derivation.source_bytes), mode="r")
    assert derivation.source_path is not None, "a real derivation has a source"
    # Raises when the source was deleted (or its content expired) before this render started: the job fails.
    return av.open(str(derivation.source_path), mode="r")


def _duration(container: InputContainer, stream: VideoStream) -> float | None:
    """The video stream's duration in seconds, else the container's; None when neither says."""
    if stream.duration is not None and stream.time_base is not None:
        return float(stream.duration * stream.time_base)
    if container.duration is not None:
        return container.duration / av.time_base
    return None


def _resampled(container: InputContainer, stream: VideoStream, job: DeriveJob, count: int) -> Iterator[Image.Image]:
    """`count` RGB frames at `job.fps`: at each instant, the latest source frame shown by then (counted from
    the first frame's timestamp, so a stream that does not start at zero keeps its length)."""
    timed = _timed_frames(container, stream, job.fps)
    current = next(timed, None)
    if current is None:
        raise ValueError("the source video has no decodable frame")
    start = current[0]
    upcoming = next(timed, None)
    image: Image.Image | None = None
    for index in range(count):
        instant = start + index / job.fps
        while upcoming is not None and upcoming[0] <= instant + TIME_EPSILON:
            current, upcoming, image = upcoming, next(timed, None), None
        if image is None:  # a slower source shows one frame at several instants: convert it once
            image = _rgb(current[1], job.width, job.height)
        yield image.copy()


def _timed_frames(container: InputContainer, stream: VideoStream, fps: int) -> Iterator[tuple[float, VideoFrame]]:
    """The decoded frames with their presentation time; a frame without one follows its predecessor."""
    rate = float(stream.average_rate) if stream.average_rate else float(fps)
    previous = -1.0 / rate
    for frame in container.decode(stream):
        time = frame.time if frame.time is not None else previous + 1.0 / rate
        previous = time
        yield time, frame


def _rgb(frame: VideoFrame, width: int, height: int) -> Image.Image:
    image: Image.Image = frame.to_image().convert("RGB")  # type: ignore[no-untyped-call]
    # An upload with an odd side is encoded one pixel smaller (4:2:0 H.264 needs even sides).
    return image if image.size == (width, height) else image.resize((width, height))


def _caption(prompt: str, width: int, height: int) -> Image.Image:
    """A transparent layer with the edit prompt on a dark banner along the bottom, pasted on every frame."""
    layer = Image.new("RGBA", (width, height), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    font_size = max(12, width // 28)
    font = ImageFont.load_default(size=font_size)
    # Roughly 0.6 em per character in the default font (as `render.FramePainter` assumes).
    chars_per_line = max(10, width // max(1, int(font_size * 0.6)))
    lines = textwrap.wrap(f"EDIT: {prompt[:CAPTION_PREVIEW_CHARS]}", chars_per_line)[:4]
    banner_height = (len(lines) + 1) * int(font_size * 1.3)
    top = height - banner_height
    draw.rectangle((0, top, width, height), fill=(0, 0, 0, 170))
    draw.multiline_text((width // 30, top + font_size // 2), "\n".join(lines), fill=(255, 255, 0, 255), font=font)
    return layer


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()
