"""The fal simulator's in-memory request store: queue records, their status JSON and their result JSON.

A `FalRequest` holds what fal's queue keeps for one submit: the request id (a UUID), the endpoint and its
app (the first two path segments, which the status and result URLs use), the render inputs, the ending chosen
at submit (a video, an error, a content-policy refusal), the request's own `fal_webhook`, and, once done with
a video, its file on the CDN stand-in (`/files/{file id}/output.mp4`), size and expiry. `as_status()` renders
the status answer (`IN_QUEUE` with `queue_position`, `IN_PROGRESS` with logs, `COMPLETED` with metrics and,
for a failure, `error` / `error_type`); `result()` the result answer or the error fal gives for it.
"""

from __future__ import annotations

import secrets
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from app.simulator.fal.errors import FalError, bad_request, content_policy, not_found
from app.simulator.fal.faults import Ending

Phase = Literal["queued", "running", "done", "cancelled"]
FILE_NAME = "output.mp4"
ERROR_TYPE = "runner_server_error"
ERROR_MESSAGE = "The model runner failed while generating the video."
CANCELLED_MESSAGE = "Request was cancelled before it started."


def new_request_id() -> str:
    return str(uuid.uuid4())


def app_of(endpoint: str) -> str:
    return "/".join(endpoint.split("/")[:2])


def file_url(base_url: str, file_id: str) -> str:
    return f"{base_url.rstrip('/')}/files/{file_id}/{FILE_NAME}"


@dataclass(slots=True)
class FalRequest:
    id: str
    endpoint: str
    prompt: str
    width: int
    height: int
    seconds: int
    ending: Ending
    created_at: float
    # Base URL of the submit: the base of file URLs when no public base is configured.
    create_base_url: str
    webhook_url: str | None = None
    reference_image: bytes | None = None
    synthetic_bytes: int | None = None
    phase: Phase = "queued"
    started_at: float | None = None
    # How long the running phase lasts; fixed when it starts so a later config change can't jump it.
    render_seconds: float = 0.0
    completed_at: float | None = None
    # Set when done with a video; the file is gone from then on.
    expires_at: float | None = None
    file_id: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    file_size: int | None = None
    directory: Path | None = None
    # Set on cancel/reset/stop so an in-flight render stops early and its files are discarded.
    cancelled: threading.Event = field(default_factory=threading.Event)
    seed: int = field(default_factory=lambda: secrets.randbelow(2**31))

    @property
    def app(self) -> str:
        return app_of(self.endpoint)

    @property
    def has_file(self) -> bool:
        return self.phase == "done" and self.ending == "video"

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def urls(self, base_url: str) -> dict[str, str]:
        response_url = f"{base_url.rstrip('/')}/{self.app}/requests/{self.id}"
        return {
            "response_url": response_url,
            "status_url": f"{response_url}/status",
            "cancel_url": f"{response_url}/cancel",
        }

    def as_status(self, *, base_url: str, queue_position: int, logs: bool) -> dict[str, Any]:
        status: dict[str, Any] = {"request_id": self.id, "response_url": self.urls(base_url)["response_url"]}
        if self.phase == "queued":
            return {"status": "IN_QUEUE", "queue_position": queue_position, **status}
        log_lines = self._logs() if logs else None
        if self.phase == "running":
            return {"status": "IN_PROGRESS", "logs": log_lines, **status}
        status.update({"status": "COMPLETED", "logs": log_lines})
        if self.phase == "cancelled":
            return {**status, "error": CANCELLED_MESSAGE, "error_type": "request_cancelled"}
        assert self.started_at is not None and self.completed_at is not None
        status["metrics"] = {"inference_time": round(self.completed_at - self.started_at, 3)}
        if self.ending == "error":
            status.update({"error": ERROR_MESSAGE, "error_type": ERROR_TYPE})
        elif self.ending == "moderation":
            status.update(
                {"error": "The content was flagged by a content checker.", "error_type": "content_policy_violation"}
            )
        return status

    def result(self, files_base_url: str) -> dict[str, Any]:
        """The model's output; raises the `FalError` fal answers instead (not done, refused, failed)."""
        if self.phase in ("queued", "running"):
            raise bad_request("Request is still in progress.")
        if self.phase == "cancelled":
            raise bad_request(CANCELLED_MESSAGE)
        if self.ending == "moderation":
            raise content_policy(self.prompt)
        if self.ending == "error":
            raise FalError(500, ERROR_MESSAGE, headers={"x-fal-error-type": ERROR_TYPE, "x-fal-retryable": "false"})
        return {
            "video": {
                "url": file_url(files_base_url, self.file_id),
                "content_type": "video/mp4",
                "file_name": FILE_NAME,
                "file_size": self.file_size,
            },
            "seed": self.seed,
        }

    def webhook_body(self, files_base_url: str) -> dict[str, Any]:
        """fal's completion delivery: `status` OK with the result as `payload`, or ERROR with fal's error body."""
        body: dict[str, Any] = {"request_id": self.id, "gateway_request_id": self.id}
        try:
            return {**body, "status": "OK", "payload": self.result(files_base_url), "error": None}
        except FalError as exc:
            return {
                **body,
                "status": "ERROR",
                "payload": exc.body(),
                "error": f"Invalid status code: {exc.status_code}",
            }

    def _logs(self) -> list[dict[str, Any]]:
        at = datetime.fromtimestamp(self.started_at or self.created_at, UTC).isoformat()
        return [{"message": "Generating video...", "level": "INFO", "source": "user", "timestamp": at}]


class RequestStore:
    """Requests by id, in submit order, and by the id of their output file."""

    def __init__(self) -> None:
        self._requests: dict[str, FalRequest] = {}
        self._by_file: dict[str, FalRequest] = {}

    def add(self, request: FalRequest) -> None:
        self._requests[request.id] = request
        self._by_file[request.file_id] = request

    def by_id(self, request_id: str) -> FalRequest:
        request = self._requests.get(request_id)
        if request is None:
            raise not_found(f"Request {request_id[:100]} not found.")
        return request

    def of_app(self, app: str, request_id: str) -> FalRequest:
        """The request, if it was submitted to `app`: fal's URLs name both, and a wrong app is a 404."""
        request = self._requests.get(request_id)
        if request is None or request.app != app:
            raise not_found(f"Request {request_id[:100]} not found.")
        return request

    def file(self, file_id: str) -> FalRequest:
        request = self._by_file.get(file_id)
        if request is None or not request.has_file:
            raise not_found("File not found.")
        return request

    def queue_position(self, request: FalRequest) -> int:
        """How many queued requests were submitted before this one (0: it runs next)."""
        position = 0
        for other in self._requests.values():
            if other is request:
                return position
            if other.phase == "queued":
                position += 1
        return position

    def clear(self) -> list[FalRequest]:
        requests = list(self._requests.values())
        self._requests.clear()
        self._by_file.clear()
        return requests

    def active(self) -> Sequence[FalRequest]:
        return [request for request in self._requests.values() if request.phase in ("queued", "running")]

    def rendering(self) -> Sequence[FalRequest]:
        return [request for request in self._requests.values() if request.phase == "running"]

    def expired_with_files(self, now: float) -> list[FalRequest]:
        return [r for r in self._requests.values() if r.is_expired(now) and r.directory is not None]
