"""The Replicate simulator's in-memory prediction store: records, ids, their JSON and the list's cursor pages.

A `Prediction` holds what Replicate keeps for one create: its id, model, input, status (`starting`,
`processing`, `succeeded`, `failed`, `canceled`), logs, error, times and metrics, the ending chosen at
create time, the per-request webhook and its event filter, and, once succeeded, its output file (a random
path under `/files/`, the capability that serves it, like a replicate.delivery URL). `as_json()` renders
the prediction object Replicate's API and webhooks send. An hour (`ttl_seconds`) after a prediction ends,
its input and output are removed (`data_removed: true`, `input: {}`, `output: null`) and its file is gone.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import secrets
import string
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from app.simulator.replicate.errors import bad_request, not_found
from app.simulator.replicate.faults import Ending

Status = Literal["starting", "processing", "succeeded", "failed", "canceled"]
TERMINAL: frozenset[str] = frozenset({"succeeded", "failed", "canceled"})
OUTPUT_NAME = "output.mp4"
# Replicate's text when a safety checker flags an input or output.
SENSITIVE_ERROR = "The input or output was flagged as sensitive. Please try again with different inputs. (E005)"
MODEL_ERROR = "Prediction failed: the model raised an error while generating the video."
_ID_ALPHABET = string.ascii_lowercase + string.digits


def new_prediction_id() -> str:
    """A 26-character lowercase id, the form of Replicate's prediction ids."""
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(26))


def version_of(model: str) -> str:
    """A stable 64-hex version id per model, the form of Replicate's version ids."""
    return hashlib.sha256(f"replicate-simulator:{model}".encode()).hexdigest()


def iso(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def file_url(base_url: str, file_id: str) -> str:
    return f"{base_url.rstrip('/')}/files/{file_id}/{OUTPUT_NAME}"


@dataclass(slots=True)
class Prediction:
    id: str
    model: str
    prompt: str
    input: dict[str, Any]
    width: int
    height: int
    duration_seconds: int
    ending: Ending
    created_at: float
    # Base URL of the create request: used for `urls` and `output` when no public base is configured.
    create_base_url: str
    # The sequence number of the create: the list's order and its cursor.
    sequence: int
    webhook: str | None = None
    webhook_events: tuple[str, ...] = ()
    reference_image: bytes | None = None
    synthetic_bytes: int | None = None
    status: Status = "starting"
    logs: str = ""
    error: str | None = None
    started_at: float | None = None
    # How long the processing phase lasts; fixed when it starts so a later config change can't jump it.
    render_seconds: float = 0.0
    completed_at: float | None = None
    # When the input and output are removed (ttl after the end); set once the prediction ends.
    expires_at: float | None = None
    data_removed: bool = False
    # The unguessable path segment of the output file (the capability, like a delivery URL's).
    file_id: str = field(default_factory=lambda: secrets.token_urlsafe(24))
    directory: Path | None = None
    # Set on cancel/reset/stop so an in-flight render stops early and its files are discarded.
    cancelled: threading.Event = field(default_factory=threading.Event)
    # Set when the prediction ends (a create with `Prefer: wait` waits for it).
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def has_file(self) -> bool:
        return self.status == "succeeded" and not self.data_removed

    def is_expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def as_json(self, base_url: str) -> dict[str, Any]:
        api = f"{base_url.rstrip('/')}/v1/predictions/{self.id}"
        output = file_url(base_url, self.file_id) if self.has_file else None
        metrics: dict[str, float] = {}
        if self.completed_at is not None:
            metrics["total_time"] = round(self.completed_at - self.created_at, 3)
            if self.started_at is not None:
                metrics["predict_time"] = round(self.completed_at - self.started_at, 3)
        return {
            "id": self.id,
            "model": self.model,
            "version": version_of(self.model),
            "input": {} if self.data_removed else dict(self.input),
            "logs": self.logs,
            "output": output,
            "data_removed": self.data_removed,
            "error": self.error,
            "status": self.status,
            "source": "api",
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "completed_at": iso(self.completed_at),
            "urls": {"get": api, "cancel": f"{api}/cancel", "web": f"https://replicate.com/p/{self.id}"},
            "metrics": metrics,
        }


def encode_cursor(sequence: int) -> str:
    return base64.urlsafe_b64encode(f"seq={sequence}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        name, _, value = text.partition("=")
        if name != "seq" or not value.isdigit():
            raise ValueError(cursor)
        return int(value)
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise bad_request("Invalid cursor.") from exc


class PredictionStore:
    """Predictions by id (creation order) and by their output file's id."""

    def __init__(self) -> None:
        self._predictions: dict[str, Prediction] = {}
        self._by_file: dict[str, Prediction] = {}
        self._sequence = 0

    def next_sequence(self) -> int:
        self._sequence += 1
        return self._sequence

    def add(self, prediction: Prediction) -> None:
        self._predictions[prediction.id] = prediction
        self._by_file[prediction.file_id] = prediction

    def get(self, prediction_id: str) -> Prediction:
        prediction = self._predictions.get(prediction_id)
        if prediction is None:
            raise not_found()
        return prediction

    def file(self, file_id: str) -> Prediction:
        """The prediction whose output is `file_id`; 404 unless it succeeded and its data is still there."""
        prediction = self._by_file.get(file_id)
        if prediction is None or not prediction.has_file:
            raise not_found()
        return prediction

    def page(self, *, before: int | None, size: int) -> tuple[list[Prediction], int | None]:
        """Newest first: up to `size` predictions created before sequence `before` (all when None), and the
        sequence to continue from (None on the last page)."""
        newest_first = sorted(self._predictions.values(), key=lambda p: p.sequence, reverse=True)
        if before is not None:
            newest_first = [p for p in newest_first if p.sequence < before]
        page = newest_first[:size]
        more = len(newest_first) > size
        return page, (page[-1].sequence if more and page else None)

    def clear(self) -> list[Prediction]:
        predictions = list(self._predictions.values())
        self._predictions.clear()
        self._by_file.clear()
        return predictions

    def active(self) -> list[Prediction]:
        return [p for p in self._predictions.values() if p.status not in TERMINAL]

    def rendering(self) -> list[Prediction]:
        return [p for p in self._predictions.values() if p.status == "processing"]

    def due_for_removal(self, now: float) -> list[Prediction]:
        return [p for p in self._predictions.values() if p.is_expired(now) and not p.data_removed]
