"""Small real MP4s for upload tests (edits, extensions, characters), encoded with PyAV."""

from __future__ import annotations

import io

import av
from PIL import Image


def frame_of(image: Image.Image) -> av.VideoFrame:
    """`av.VideoFrame.from_image`, typed: PyAV's stubs leave that one function unannotated."""
    frame: av.VideoFrame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame


def image_of(frame: av.VideoFrame) -> Image.Image:
    """`frame.to_image()`, typed (unannotated in PyAV's stubs, like `from_image`)."""
    image: Image.Image = frame.to_image()  # type: ignore[no-untyped-call]
    return image


def mp4_bytes(width: int = 320, height: int = 180, seconds: float = 1.0, fps: int = 8) -> bytes:
    """An H.264 MP4 of `seconds` at `fps`, a colour sweep (every frame differs)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "ultrafast"}
        frames = max(1, round(seconds * fps))
        for index in range(frames):
            image = Image.new("RGB", (width, height), (index * 20 % 256, 90, 160))
            for packet in stream.encode(frame_of(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()
