"""What the upstream `/v1/videos` contract sends back, parsed leniently (extra fields are ignored)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict


class UpstreamVideoError(BaseModel):
    model_config = ConfigDict(extra="ignore")

    code: str | None = None
    message: str | None = None


class UpstreamVideo(BaseModel):
    model_config = ConfigDict(extra="ignore")

    id: str
    object: str = "video"
    model: str
    status: str
    # None: the provider reports no progress (most live ones); the gateway then synthesizes one.
    progress: int | None = 0
    created_at: int
    completed_at: int | None = None
    expires_at: int | None = None
    prompt: str | None = None
    size: str
    seconds: str
    remixed_from_video_id: str | None = None
    error: UpstreamVideoError | None = None


@dataclass(frozen=True)
class ImageInput:
    """An `input_reference` image held in memory (bounded by the API's image size limit)."""

    data: bytes
    content_type: str
    filename: str
    # Read from the bytes when the image was checked; each model decides whether they must equal `size`.
    width: int = 0
    height: int = 0


@dataclass(frozen=True)
class CreateVideoCommand:
    prompt: str
    model: str
    seconds: str
    size: str
    image: ImageInput | None = None
    # An https link as the caller sent it; the video service fetches it (app/upstream/image_url.py) and sends
    # the bytes as `image` before any adapter is called, so no upstream ever fetches a caller's URL.
    image_url: str | None = None
