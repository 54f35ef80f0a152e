"""The `/v1/callbacks` wire shapes: the caller's signing secret, standing endpoints and delivery log."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from app.callbacks.service import DeliveryRecord
from app.core.timestamps import unix_seconds, unix_seconds_or_none
from app.models import CallbackAttempt, CallbackEndpoint, CallbackSecret, DeliveryState


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2048)


class SecretObject(BaseModel):
    """The caller's `whsec_` secret: verify callbacks with it (Standard Webhooks)."""

    object: Literal["callback.secret"] = "callback.secret"
    secret: str
    created_at: int
    rotated_at: int | None
    # After a rotation the previous secret also signs (a second `v1,` entry) until then.
    previous_secret_valid_until: int | None

    @classmethod
    def from_row(cls, row: CallbackSecret) -> SecretObject:
        return cls(
            secret=row.secret,
            created_at=unix_seconds(row.created_at),
            rotated_at=unix_seconds_or_none(row.rotated_at),
            previous_secret_valid_until=unix_seconds_or_none(row.previous_valid_until),
        )


class EndpointObject(BaseModel):
    id: str
    object: Literal["callback.endpoint"] = "callback.endpoint"
    url: str
    created_at: int

    @classmethod
    def from_row(cls, row: CallbackEndpoint) -> EndpointObject:
        return cls(id=row.id, url=row.url, created_at=unix_seconds(row.created_at))


class EndpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EndpointObject]


class EndpointDeleted(BaseModel):
    id: str
    object: Literal["callback.endpoint.deleted"] = "callback.endpoint.deleted"
    deleted: bool = True


class AttemptObject(BaseModel):
    attempt: int
    attempted_at: int
    address: str | None
    outcome: str
    status_code: int | None
    error: str | None
    duration_ms: int | None

    @classmethod
    def from_row(cls, row: CallbackAttempt) -> AttemptObject:
        return cls(
            attempt=row.attempt,
            attempted_at=unix_seconds(row.attempted_at),
            address=row.address,
            outcome=row.outcome,
            status_code=row.status_code,
            error=row.error,
            duration_ms=row.duration_ms,
        )


class DeliveryObject(BaseModel):
    """One event to one destination; `id` is the `webhook-id` header the receiver saw."""

    id: str
    object: Literal["callback.delivery"] = "callback.delivery"
    event_id: str
    event_type: str
    video_id: str
    url: str
    endpoint_id: str | None
    state: str
    attempts: list[AttemptObject]
    next_attempt_at: int | None
    created_at: int
    finished_at: int | None

    @classmethod
    def from_record(cls, record: DeliveryRecord) -> DeliveryObject:
        row = record.delivery
        return cls(
            id=row.webhook_id,
            event_id=row.event_id,
            event_type=row.event_type,
            video_id=row.video_id,
            url=row.url,
            endpoint_id=row.endpoint_id,
            state=row.state,
            attempts=[AttemptObject.from_row(attempt) for attempt in record.attempts],
            next_attempt_at=unix_seconds(row.next_attempt_at) if row.state == DeliveryState.PENDING else None,
            created_at=unix_seconds(row.created_at),
            finished_at=unix_seconds_or_none(row.finished_at),
        )


class DeliveryList(BaseModel):
    object: Literal["list"] = "list"
    data: list[DeliveryObject]
    first_id: str | None
    last_id: str | None
    has_more: bool
