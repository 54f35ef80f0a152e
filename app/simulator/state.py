"""The simulator's in-memory video store: records, their JSON form, and list paging; the characters
(`/v1/videos/characters`); and the arrival window its requests-per-minute limit counts in.

A `VideoRecord` holds what upstream would persist for one job; `as_video()` renders the 13-field `Video`
object with every key present (null where unset). Progress is derived from timestamps at read time, so a
poll between lifecycle ticks still sees it rise; status changes happen only in the runtime's lifecycle
loop, so `completed` always means the files exist. An edit or extension is a video like any other, whose
record also says what it is made from (`Derivation`).
"""

from __future__ import annotations

import secrets
import threading
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.simulator.errors import SimulatorError, invalid

Status = Literal["queued", "in_progress", "completed", "failed"]
Order = Literal["asc", "desc"]


def new_video_id() -> str:
    return f"video_{secrets.token_hex(24)}"


def new_character_id() -> str:
    return f"char_{secrets.token_hex(16)}"


@dataclass(frozen=True, slots=True)
class Derivation:
    """What an edit or extension is made from: its source's MP4 (one of the three forms) and, for an
    extension, the seconds it adds. `app.simulator.derive` turns it into the new video's files."""

    kind: Literal["edit", "extension"]
    # A simulator video's MP4, read when the render starts (the source must still exist then).
    source_path: Path | None = None
    # An uploaded MP4 (at most `derive.MAX_UPLOAD_BYTES`); dropped once the job has ended.
    source_bytes: bytes | None = None
    # A synthetic-mode source has no frames to decode: the result is synthetic too, of this many bytes.
    source_synthetic_bytes: int | None = None
    extension_seconds: int = 0


@dataclass(slots=True)
class VideoRecord:
    id: str
    model: str
    prompt: str
    size: str
    seconds: str
    created_at: float
    remixed_from_video_id: str | None = None
    reference_image: bytes | None = None
    synthetic_bytes: int | None = None
    # Set for edits and extensions: the source their frames come from.
    derivation: Derivation | None = None
    # Decided at creation from the blocked words then in force; the job fails when its render time is up.
    moderation_blocked: bool = False
    status: Status = "queued"
    started_at: float | None = None
    # How long the in_progress phase lasts; fixed when the job starts so a later config change can't jump it.
    render_seconds: float = 0.0
    completed_at: int | None = None
    expires_at: int | None = None
    error: dict[str, str] | None = None
    directory: Path | None = None
    # Authorises the `/_sim/files/...` redirect target, like the signature of a presigned URL.
    download_token: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    # Set on delete/reset so an in-flight render stops early and its files are discarded.
    cancelled: threading.Event = field(default_factory=threading.Event)

    def progress(self, now: float) -> int:
        if self.status == "completed":
            return 100
        if self.status == "failed":
            return 100 if self.completed_at is not None else 0
        if self.status == "queued" or self.started_at is None:
            return 0
        if self.render_seconds <= 0:
            return 99
        # Never 100 before the status flips: clients treat 100 as "about to be completed", not done.
        return max(1, min(99, int((now - self.started_at) / self.render_seconds * 100)))

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def as_video(self, now: float) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "video",
            "model": self.model,
            "status": self.status,
            "progress": self.progress(now),
            "created_at": int(self.created_at),
            "completed_at": self.completed_at,
            "expires_at": self.expires_at,
            "prompt": self.prompt,
            "size": self.size,
            "seconds": self.seconds,
            "remixed_from_video_id": self.remixed_from_video_id,
            "error": self.error,
        }


class VideoStore:
    """Videos by id, in creation order (the list order; `created_at` has only one-second resolution)."""

    def __init__(self) -> None:
        self._videos: dict[str, VideoRecord] = {}

    def add(self, record: VideoRecord) -> None:
        self._videos[record.id] = record

    def get(self, video_id: str) -> VideoRecord:
        record = self._videos.get(video_id)
        if record is None:
            raise SimulatorError(404, f"Video with id '{video_id}' not found.", param="video_id", code="not_found")
        return record

    def remove(self, video_id: str) -> VideoRecord:
        record = self.get(video_id)
        del self._videos[video_id]
        return record

    def clear(self) -> list[VideoRecord]:
        records = list(self._videos.values())
        self._videos.clear()
        return records

    def active(self) -> list[VideoRecord]:
        return [record for record in self._videos.values() if record.status in ("queued", "in_progress")]

    def rendering(self) -> list[VideoRecord]:
        return [record for record in self._videos.values() if record.status == "in_progress"]

    def page(self, *, after: str | None, limit: int, order: Order) -> tuple[list[VideoRecord], bool]:
        """One page of the list: the records after the `after` id in `order`, and whether more follow."""
        ordered = list(self._videos.values())
        if order == "desc":
            ordered.reverse()
        start = 0
        if after is not None:
            ids = [record.id for record in ordered]
            if after not in ids:
                raise invalid(f"No video found with id '{after}' for the 'after' cursor.", param="after")
            start = ids.index(after) + 1
        rest = ordered[start:]
        return rest[:limit], len(rest) > limit


def list_envelope(records: list[VideoRecord], has_more: bool, now: float) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [record.as_video(now) for record in records],
        "first_id": records[0].id if records else None,
        "last_id": records[-1].id if records else None,
        "has_more": has_more,
    }


@dataclass(frozen=True, slots=True)
class Character:
    """A character made from an uploaded video; the simulator keeps only its name (the video was checked)."""

    id: str
    name: str
    created_at: int

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "name": self.name, "created_at": self.created_at}


class CharacterStore:
    def __init__(self) -> None:
        self._characters: dict[str, Character] = {}

    def add(self, character: Character) -> None:
        self._characters[character.id] = character

    def get(self, character_id: str) -> Character:
        character = self._characters.get(character_id)
        if character is None:
            raise SimulatorError(
                404, f"Character with id '{character_id}' not found.", param="character_id", code="not_found"
            )
        return character

    def clear(self) -> None:
        self._characters.clear()


class ArrivalWindow:
    """When the requests a rate limit counts arrived, within a sliding window (a provider's RPM)."""

    def __init__(self) -> None:
        self._arrivals: deque[float] = deque()

    def admit(self, now: float, *, limit: int, window_seconds: float) -> float | None:
        """Count one arrival at `now` and return None; or, with `limit` arrivals in the window already, count
        nothing and return the seconds until the oldest leaves it."""
        while self._arrivals and self._arrivals[0] <= now - window_seconds:
            self._arrivals.popleft()
        if len(self._arrivals) >= limit:
            return self._arrivals[0] + window_seconds - now
        self._arrivals.append(now)
        return None

    def clear(self) -> None:
        self._arrivals.clear()
