"""The Gemini simulator's in-memory operation store: records, ids, and their long-running-operation JSON.

An `Operation` holds what Google keeps for one `predictLongRunning` call: its name
(`models/{model}/operations/{id}`), the render inputs (for an extension, the operation whose video it
extends), the ending chosen at create time (sample, error or RAI filter), and, once done with a sample, the
generated file (`file_id`, the per-file download token, the directory of the rendered MP4 and its expiry).
`as_operation()` renders the poll answer in Google's shape: `{"name"}` only while running, then `done: true`
with exactly one of `response` or `error`.
"""

from __future__ import annotations

import secrets
import string
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from app.simulator.gemini.errors import not_found
from app.simulator.gemini.faults import Ending

Phase = Literal["queued", "running", "done"]
RESPONSE_TYPE = "type.googleapis.com/google.ai.generativelanguage.v1beta.PredictLongRunningResponse"
# google.rpc.Code 13; the message is Google's canonical text for INTERNAL.
OPERATION_ERROR = {"code": 13, "message": "Internal error encountered.", "status": "INTERNAL"}
RAI_FILTERED_REASON = (
    "We encountered an issue with your prompt: it may violate our content policies, so no video was "
    "generated. Please try rephrasing the prompt. You have not been charged for this attempt."
)
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_resource_id() -> str:
    """A 12-character lowercase id, the form of Google's operation and file ids (e.g. `321kvdcepmcg`)."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def download_uri(base_url: str, file_id: str) -> str:
    return f"{base_url.rstrip('/')}/v1beta/files/{file_id}:download?alt=media"


@dataclass(slots=True)
class Operation:
    id: str
    model: str
    prompt: str
    width: int
    height: int
    # The whole video's length: for an extension, the source's plus the 7 s it adds.
    duration_seconds: int
    ending: Ending
    created_at: float
    # Base URL of the create request: the sample URI a webhook carries when no public base is configured.
    create_base_url: str
    reference_image: bytes | None = None
    synthetic_bytes: int | None = None
    # An extension: the id of the operation whose generated video it continues (its frames come first).
    extends: str | None = None
    phase: Phase = "queued"
    started_at: float | None = None
    # How long the running phase lasts; fixed when it starts so a later config change can't jump it.
    render_seconds: float = 0.0
    completed_at: float | None = None
    # Set when the operation is done with a sample; the file is gone from then on.
    expires_at: float | None = None
    file_id: str = field(default_factory=new_resource_id)
    # Authorises the redirect target, like the signature of a presigned storage URL.
    download_token: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    directory: Path | None = None
    # Set on reset/stop so an in-flight render stops early and its files are discarded.
    cancelled: threading.Event = field(default_factory=threading.Event)

    @property
    def name(self) -> str:
        return f"models/{self.model}/operations/{self.id}"

    @property
    def has_file(self) -> bool:
        return self.phase == "done" and self.ending == "sample"

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def file_available(self, now: float) -> bool:
        """Whether the generated file can be served (done with a sample, not expired, its files still there)."""
        return (
            self.has_file
            and not self.is_expired(now)
            and (self.directory is not None or self.synthetic_bytes is not None)
        )

    def as_operation(self, base_url: str) -> dict[str, Any]:
        if self.phase != "done":
            return {"name": self.name}
        if self.ending == "error":
            return {"name": self.name, "done": True, "error": dict(OPERATION_ERROR)}
        if self.ending == "moderation":
            generated: dict[str, Any] = {"raiMediaFilteredCount": 1, "raiMediaFilteredReasons": [RAI_FILTERED_REASON]}
        else:
            generated = {"generatedSamples": [{"video": {"uri": download_uri(base_url, self.file_id)}}]}
        return {
            "name": self.name,
            "done": True,
            "response": {"@type": RESPONSE_TYPE, "generateVideoResponse": generated},
        }


class OperationStore:
    """Operations by id (creation order) and by the id of their generated file."""

    def __init__(self) -> None:
        self._operations: dict[str, Operation] = {}
        self._by_file: dict[str, Operation] = {}

    def add(self, operation: Operation) -> None:
        self._operations[operation.id] = operation
        self._by_file[operation.file_id] = operation

    def by_id(self, operation_id: str) -> Operation:
        operation = self._operations.get(operation_id)
        if operation is None:
            raise not_found(f"Operation {operation_id} not found.")
        return operation

    def by_name(self, name: str) -> Operation:
        """`models/{model}/operations/{id}` → its operation; 404 unless the whole name matches."""
        parts = name.split("/")
        if len(parts) == 4 and parts[0] == "models" and parts[2] == "operations":
            operation = self._operations.get(parts[3])
            if operation is not None and operation.model == parts[1]:
                return operation
        raise not_found(f"Operation {name} not found.")

    def get(self, operation_id: str) -> Operation | None:
        return self._operations.get(operation_id)

    def by_file_id(self, file_id: str) -> Operation | None:
        """The operation that generated (or will generate) file `file_id`, whatever its state."""
        return self._by_file.get(file_id)

    def file(self, file_id: str) -> Operation:
        """The operation whose generated file is `file_id`; 404 until it is done with a sample."""
        operation = self._by_file.get(file_id)
        if operation is None or not operation.has_file:
            raise not_found(f"File {file_id} not found.")
        return operation

    def clear(self) -> list[Operation]:
        operations = list(self._operations.values())
        self._operations.clear()
        self._by_file.clear()
        return operations

    def active(self) -> list[Operation]:
        return [operation for operation in self._operations.values() if operation.phase != "done"]

    def rendering(self) -> list[Operation]:
        return [operation for operation in self._operations.values() if operation.phase == "running"]

    def expired_with_files(self, now: float) -> list[Operation]:
        return [op for op in self._operations.values() if op.is_expired(now) and op.directory is not None]
