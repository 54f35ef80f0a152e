"""`StrEnumType`: the database keeps the string, Python sees the enum (app/models/types.py)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.dialects import postgresql
from sqlalchemy.orm import InstrumentedAttribute

from app.models import (
    ArchiveJob,
    Asset,
    AssetState,
    AttemptOutcome,
    CallbackAttempt,
    CallbackDelivery,
    DeliveryState,
    EventOutcome,
    IdempotencyRecord,
    JobKind,
    JobState,
    Video,
    VideoOrigin,
    VideoStatus,
    WebhookEvent,
)
from app.models.idempotency import IdempotencyState
from app.models.types import StrEnumType

DIALECT = postgresql.dialect()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("column", "enum"),
    [
        (Video.status, VideoStatus),
        (Video.origin, VideoOrigin),
        (Asset.state, AssetState),
        (ArchiveJob.kind, JobKind),
        (ArchiveJob.state, JobState),
        (WebhookEvent.outcome, EventOutcome),
        (CallbackDelivery.state, DeliveryState),
        (CallbackAttempt.outcome, AttemptOutcome),
        (IdempotencyRecord.state, IdempotencyState),
    ],
)
def test_the_enum_columns_store_strings_and_give_members(
    column: InstrumentedAttribute[Any], enum: type[StrEnum]
) -> None:
    member = next(iter(enum))
    column_type = column.type
    assert isinstance(column_type, StrEnumType) and column_type.enum is enum
    assert column_type.process_bind_param(member, DIALECT) == member.value
    assert type(column_type.process_bind_param(member, DIALECT)) is str  # no enum reaches the driver
    assert column_type.process_result_value(member.value, DIALECT) is member


def test_a_string_set_on_a_row_becomes_the_member() -> None:
    video = Video(id="video_x", status="in_progress", origin="remix")
    assert video.status is VideoStatus.IN_PROGRESS and video.status.is_terminal is False
    assert video.origin is VideoOrigin.REMIX
    video.status = "completed"  # type: ignore[assignment]
    assert video.status is VideoStatus.COMPLETED


def test_a_value_the_enum_does_not_have_is_refused_on_assignment() -> None:
    with pytest.raises(ValueError, match="expired"):
        Video(id="video_x", status="expired")


def test_a_query_may_compare_with_any_string() -> None:
    """A console filter passes what the operator typed: no error, it simply matches nothing."""
    statement = select(Video.id).where(Video.status == "nonsense", Video.status.in_([VideoStatus.QUEUED, "failed"]))
    compiled = statement.compile(dialect=DIALECT, compile_kwargs={"literal_binds": True})
    assert "'nonsense'" in str(compiled) and "('queued', 'failed')" in str(compiled)
