"""The Seedance simulator's in-memory task store: records, ids, paging, and the task object's JSON.

A `Task` holds what ModelArk keeps for one `POST /contents/generations/tasks`: its id (`cgt-<UTC time>-<5
chars>`), the render inputs, the ending chosen at create time, the status (`queued`, `running`, `succeeded`,
`failed`, `cancelled`, `expired`) and, once succeeded, the generated file (its id, the signed query string of its
URL, the directory of the rendered MP4 and when the URL stops working). `as_json()` renders Ark's task object,
which is also the body of every callback: `content.video_url` and `usage` only once succeeded, `error` only
once failed.
"""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from app.simulator.seedance.errors import task_not_found
from app.simulator.seedance.faults import Ending

Status = Literal["queued", "running", "succeeded", "failed", "cancelled", "expired"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "cancelled", "expired"})
# (code, message) of each failed ending.
FAILURES: dict[str, tuple[str, str]] = {
    "error": ("InternalServiceError", "The service encountered an unexpected internal error."),
    "moderation": (
        "OutputVideoSensitiveContentDetected",
        "The request failed because the output video may contain sensitive information. This task is not billed.",
    ),
}
_ID_ALPHABET = string.ascii_lowercase + string.digits
# Seedance's token count of a video: width x height x frames / 1024 (what `usage` reports).
TOKEN_DIVISOR = 1024


def new_task_id(now: float) -> str:
    """`cgt-20261129101500-a1b2c`: the form of Ark's task ids."""
    stamp = datetime.fromtimestamp(now, tz=UTC).strftime("%Y%m%d%H%M%S")
    return f"cgt-{stamp}-{''.join(secrets.choice(_ID_ALPHABET) for _ in range(5))}"


def signed_query(now: float, ttl_seconds: float) -> str:
    """A TOS-style presigned query string. The file host compares it byte for byte with the one it issued, so
    a client that re-encodes it (`%2F` → `/`, reordered parameters) is refused, as a real signature would be."""
    moment = datetime.fromtimestamp(now, tz=UTC)
    scope = f"{moment:%Y%m%d}%2Fap-southeast-1%2Ftos%2Frequest"
    return (
        "X-Tos-Algorithm=TOS4-HMAC-SHA256"
        f"&X-Tos-Credential=AKLTsimulator%2F{scope}"
        f"&X-Tos-Date={moment:%Y%m%dT%H%M%SZ}"
        f"&X-Tos-Expires={max(1, int(ttl_seconds))}"
        "&X-Tos-SignedHeaders=host"
        f"&X-Tos-Signature={secrets.token_hex(32)}"
    )


@dataclass(slots=True)
class Task:
    id: str
    model: str
    prompt: str
    ratio: str
    resolution: str
    width: int
    height: int
    duration: int
    seed: int
    service_tier: str
    execution_expires_after: int
    generate_audio: bool | None
    ending: Ending
    created_at: float
    # Base URL of the create request: where `content.video_url` points when no files base is configured.
    create_base_url: str
    callback_url: str | None = None
    reference_image: bytes | None = None
    synthetic_bytes: int | None = None
    status: Status = "queued"
    updated_at: float = 0.0
    started_at: float | None = None
    # How long the running phase lasts; fixed when it starts so a later config change can't jump it.
    render_seconds: float = 0.0
    fps: int = 24
    # Set once succeeded: from then on the URL is refused (TOS answers 403 to an expired signature).
    url_expires_at: float | None = None
    file_id: str = field(default_factory=lambda: secrets.token_hex(16))
    signed_query: str = ""
    directory: Path | None = None
    # Set on delete/reset/stop so an in-flight render stops early and its files are discarded.
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def has_file(self) -> bool:
        return self.status == "succeeded"

    def is_url_expired(self, now: float) -> bool:
        return self.url_expires_at is not None and now >= self.url_expires_at

    def video_url(self, files_base_url: str) -> str:
        return f"{files_base_url.rstrip('/')}/files/{self.file_id}.mp4?{self.signed_query}"

    def as_json(self, files_base_url: str) -> dict[str, Any]:
        task: dict[str, Any] = {
            "id": self.id,
            "model": self.model,
            "status": self.status,
            "created_at": int(self.created_at),
            "updated_at": int(self.updated_at or self.created_at),
            "seed": self.seed,
            "resolution": self.resolution,
            "ratio": self.ratio,
            "duration": self.duration,
            "framespersecond": self.fps,
            "service_tier": self.service_tier,
            "execution_expires_after": self.execution_expires_after,
        }
        if self.generate_audio is not None:
            task["generate_audio"] = self.generate_audio
        if self.status == "succeeded":
            task["content"] = {"video_url": self.video_url(files_base_url)}
            tokens = self.width * self.height * self.fps * self.duration // TOKEN_DIVISOR
            task["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        elif self.status == "failed":
            code, message = FAILURES[self.ending]
            task["error"] = {"code": code, "message": message}
        return task


class TaskStore:
    """Tasks by id (creation order) and by the id of their generated file."""

    def __init__(self) -> None:
        self._tasks: dict[str, Task] = {}
        self._by_file: dict[str, Task] = {}

    def add(self, task: Task) -> None:
        self._tasks[task.id] = task
        self._by_file[task.file_id] = task

    def contains(self, task_id: str) -> bool:
        return task_id in self._tasks

    def get(self, task_id: str) -> Task:
        task = self._tasks.get(task_id)
        if task is None:
            raise task_not_found(task_id)
        return task

    def remove(self, task: Task) -> None:
        self._tasks.pop(task.id, None)
        self._by_file.pop(task.file_id, None)

    def by_file(self, file_id: str) -> Task | None:
        """The task whose generated file is `file_id`, once it has one."""
        task = self._by_file.get(file_id)
        return task if task is not None and task.has_file else None

    def page(
        self, *, page_num: int, page_size: int, status: str | None, task_ids: list[str], model: str | None
    ) -> tuple[list[Task], int]:
        """One page of the matching tasks, newest first, and how many match in all."""
        matching = [
            task
            for task in reversed(self._tasks.values())
            if (status is None or task.status == status)
            and (not task_ids or task.id in task_ids)
            and (model is None or task.model == model)
        ]
        start = (page_num - 1) * page_size
        return matching[start : start + page_size], len(matching)

    def clear(self) -> list[Task]:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        self._by_file.clear()
        return tasks

    def active(self) -> list[Task]:
        return [task for task in self._tasks.values() if task.status in ("queued", "running")]

    def rendering(self) -> list[Task]:
        return [task for task in self._tasks.values() if task.status == "running"]

    def expired_with_files(self, now: float) -> list[Task]:
        return [task for task in self._tasks.values() if task.is_url_expired(now) and task.directory is not None]
