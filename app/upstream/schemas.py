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
    # Our video's id, which an adapter whose upstream calls back puts in the callback URL it gives
    # (app/upstream/reference.py), so a create cut off before upstream answered can be found again.
    reference: str | None = None


@dataclass(frozen=True)
class VideoUpload:
    """An uploaded MP4 (an edit's or extension's source, or a character's clip), held in memory: bounded by
    `VG_API__MAX_VIDEO_BYTES` and checked to be a real MP4 with a video stream before any upstream call."""

    data: bytes
    filename: str
    width: int
    height: int
    duration_seconds: float
    content_type: str = "video/mp4"


@dataclass(frozen=True)
class SourceVideo:
    """What an edit or an extension starts from: exactly one of a render this same profile made (its upstream
    id) or an uploaded MP4."""

    upstream_id: str | None = None
    upload: VideoUpload | None = None
    # The source's size and length (the render's, or read from the upload): an extension's checks need them.
    size: str = ""
    seconds: str = ""


@dataclass(frozen=True)
class EditCommand:
    prompt: str
    model: str  # the provider's id for the model
    source: SourceVideo


@dataclass(frozen=True)
class ExtendCommand:
    prompt: str
    model: str  # the provider's id for the model
    # The length of the new segment only; the result is the source's length plus this (stitched).
    seconds: str
    source: SourceVideo


@dataclass(frozen=True)
class CharacterCommand:
    name: str
    video: VideoUpload


@dataclass(frozen=True)
class UpstreamCharacter:
    """A character as upstream answered it: `{id, name, created_at}`."""

    id: str
    name: str | None
    created_at: int
