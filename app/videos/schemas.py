"""The `/v1/videos` wire shapes the gateway answers with (OpenAI's contract)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Literal, Protocol

from pydantic import BaseModel

from app.core.timestamps import unix_seconds, unix_seconds_or_none
from app.models import VideoOrigin
from app.upstream.ids import as_caller_text

SIZES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
SECONDS = ("4", "8", "12")
DEFAULT_MODEL = "sora-2"
DEFAULT_SIZE = "720x1280"
DEFAULT_SECONDS = "4"
MAX_PROMPT_CHARS = 32000


class VideoFields(Protocol):
    """What the wire shapes read of a video: an ORM `Video`, or the facade's plain `VideoView` (decision 013)."""

    @property
    def id(self) -> str: ...
    @property
    def model(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def progress(self) -> int: ...
    @property
    def created_at(self) -> datetime: ...
    @property
    def completed_at(self) -> datetime | None: ...
    @property
    def expires_at(self) -> datetime | None: ...
    @property
    def prompt(self) -> str: ...
    @property
    def size(self) -> str: ...
    @property
    def seconds(self) -> str: ...
    @property
    def remixed_from(self) -> str | None: ...
    @property
    def origin(self) -> str: ...
    @property
    def error_code(self) -> str | None: ...
    @property
    def error_message(self) -> str | None: ...
    @property
    def upstream_id(self) -> str | None: ...
    @property
    def caller_metadata(self) -> dict[str, str] | None: ...


class AssetFields(Protocol):
    """What a retrieve's `archive` reads of an asset: an ORM `Asset` or the facade's `AssetStateView`."""

    @property
    def variant(self) -> str: ...
    @property
    def state(self) -> str: ...
    @property
    def bytes(self) -> int | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def error(self) -> str | None: ...


class VideoErrorObject(BaseModel):
    code: str
    message: str


class VideoObject(BaseModel):
    """All 13 fields of the contract's `Video`, always present (null where unset)."""

    id: str
    object: Literal["video"] = "video"
    model: str
    status: str
    progress: int
    created_at: int
    completed_at: int | None
    expires_at: int | None
    prompt: str | None
    size: str
    seconds: str
    remixed_from_video_id: str | None
    error: VideoErrorObject | None

    @classmethod
    def from_row(cls, video: VideoFields) -> VideoObject:
        return cls(**cls.fields_of(video))

    @staticmethod
    def fields_of(video: VideoFields) -> dict[str, Any]:
        """The contract's fields of a video row (a subclass adds its own to them, validating once)."""
        error = None
        if video.error_code or video.error_message:
            # An upstream's reason may name its own id; the caller knows only ours.
            message = as_caller_text(video.error_message, upstream_id=video.upstream_id, video_id=video.id)
            error = VideoErrorObject(code=video.error_code or "unknown", message=message or "")
        return dict(
            id=video.id,
            model=video.model,
            status=video.status,
            progress=video.progress,
            created_at=unix_seconds(video.created_at),
            completed_at=unix_seconds_or_none(video.completed_at),
            expires_at=unix_seconds_or_none(video.expires_at),
            prompt=video.prompt,
            size=video.size,
            seconds=video.seconds,
            # The contract's field names a remix's source only; an edit's or extension's is `source_video_id`.
            remixed_from_video_id=video.remixed_from if video.origin == VideoOrigin.REMIX.value else None,
            error=error,
        )


class ArchiveEntry(BaseModel):
    """One variant's copy in our archive: `pending`, `downloading`, `archived`, `failed`, `expired` or `lost`."""

    state: str
    bytes: int | None
    sha256: str | None
    error: str | None


class ArchivedVideoObject(VideoObject):
    """Retrieve's answer: the contract's 13 fields plus `archive` (the stock SDK ignores extra fields)."""

    archive: dict[str, ArchiveEntry]
    # Gateway extension: the caller's own metadata from create.
    metadata: dict[str, str] | None = None
    # Gateway extension, provenance: how the video came to be (`create`, `remix`, `edit`, `extension`) and the
    # caller's video it was made from (none for a create, or an edit or extension of an uploaded MP4).
    origin: str = VideoOrigin.CREATE.value
    source_video_id: str | None = None

    @classmethod
    def from_rows(cls, video: VideoFields, assets: Sequence[AssetFields]) -> ArchivedVideoObject:
        archive = {
            asset.variant: ArchiveEntry(
                state=asset.state,
                bytes=asset.bytes,
                sha256=asset.sha256,
                error=as_caller_text(asset.error, upstream_id=video.upstream_id, video_id=video.id),
            )
            for asset in assets
        }
        return cls(
            **VideoObject.fields_of(video),
            archive=archive,
            metadata=video.caller_metadata,
            origin=video.origin,
            source_video_id=video.remixed_from,
        )


class AssetLink(BaseModel):
    """An archived variant with a presigned S3 GET URL (gateway extension for direct readers)."""

    variant: str
    content_type: str
    bytes: int | None
    sha256: str | None
    url: str
    expires_at: int


class AssetLinkList(BaseModel):
    object: Literal["list"] = "list"
    data: list[AssetLink]


class VideoList(BaseModel):
    object: Literal["list"] = "list"
    data: list[VideoObject]
    first_id: str | None
    last_id: str | None
    has_more: bool


class VideoDeleted(BaseModel):
    id: str
    object: Literal["video.deleted"] = "video.deleted"
    deleted: bool = True


class RemixBody(BaseModel):
    prompt: str
