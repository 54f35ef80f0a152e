"""Queries of app/limits: request counters, the caller lock, spend and concurrency, usage rows."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from sqlalchemy import ColumnElement, Integer, and_, cast, func, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Caller, KeyRequestWindow, Video, VideoStatus
from app.videos.state import SUBMISSION_UNKNOWN

# A failed render is not charged, except one whose submission outcome is unknown: upstream may have
# started (and billed) it, so it keeps its reservation until an operator reconciles it.
MODERATION_BLOCKED = "moderation_blocked"
ACTIVE_STATUSES = (VideoStatus.QUEUED.value, VideoStatus.IN_PROGRESS.value)


def billable() -> ColumnElement[bool]:
    return or_(Video.status != VideoStatus.FAILED.value, Video.error_code == SUBMISSION_UNKNOWN)


def moderation_blocked() -> ColumnElement[bool]:
    return and_(Video.status == VideoStatus.FAILED.value, Video.error_code == MODERATION_BLOCKED)


@dataclass(frozen=True)
class WindowRow:
    window_start: datetime
    current_count: int
    previous_count: int
    now: datetime


@dataclass(frozen=True)
class CallerOverrides:
    requests_per_minute: int | None
    max_concurrent_renders: int | None
    budget_usd_per_period: Decimal | None
    budget_period: str | None


@dataclass(frozen=True)
class UsageRow:
    day: date
    model: str
    renders: int
    completed: int
    pending: int
    failed: int
    moderation_blocked: int
    billed_renders: int
    billed_seconds: int


@dataclass(frozen=True)
class ProfileUsageRow:
    """Renders of one model on one upstream profile, by outcome (the caller's model: it sets the price)."""

    profile: str
    model: str
    renders: int
    completed: int
    pending: int
    failed: int
    moderation_blocked: int
    billed_renders: int
    billed_seconds: int


def charged_seconds() -> ColumnElement[int]:
    """The seconds a render is charged for: an extension's new segment (`billed_seconds`), else its length."""
    return func.coalesce(Video.billed_seconds, cast(Video.seconds, Integer))


def _outcome_columns() -> list[ColumnElement[int]]:
    """Renders, completed, pending, failed, moderation-blocked, billed renders and billed seconds of a group."""
    failed = and_(Video.status == VideoStatus.FAILED.value, Video.error_code.is_distinct_from(MODERATION_BLOCKED))
    return [
        func.count(),
        func.count().filter(Video.status == VideoStatus.COMPLETED.value),
        func.count().filter(Video.status.in_(ACTIVE_STATUSES)),
        func.count().filter(failed),
        func.count().filter(moderation_blocked()),
        func.count().filter(billable()),
        func.coalesce(func.sum(charged_seconds()).filter(billable()), 0),
    ]


@dataclass(frozen=True)
class LimitsRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> LimitsRepository:
        return cls(session)

    # ----- request rate -------------------------------------------------------------------------

    async def lock_window(self, api_key_id: uuid.UUID) -> WindowRow:
        """The key's counters, created if missing, locked until the transaction ends; with the DB's now()."""
        statement = (
            insert(KeyRequestWindow)
            .values(api_key_id=api_key_id, window_start=func.now(), current_count=0, previous_count=0)
            # A no-op update, so the existing row is both locked and returned.
            .on_conflict_do_update(
                index_elements=[KeyRequestWindow.api_key_id],
                set_={"current_count": KeyRequestWindow.current_count},
            )
            .returning(
                KeyRequestWindow.window_start,
                KeyRequestWindow.current_count,
                KeyRequestWindow.previous_count,
                func.now(),
            )
        )
        row = (await self.session.execute(statement)).one()
        return WindowRow(window_start=row[0], current_count=row[1], previous_count=row[2], now=row[3])

    async def store_window(
        self, api_key_id: uuid.UUID, *, window_start: datetime, current: int, previous: int, now: datetime
    ) -> None:
        await self.session.execute(
            update(KeyRequestWindow)
            .where(KeyRequestWindow.api_key_id == api_key_id)
            .values(window_start=window_start, current_count=current, previous_count=previous, last_request_at=now)
            .execution_options(synchronize_session=False)
        )

    # ----- renders: lock, spend, concurrency ----------------------------------------------------

    async def lock_caller(self, caller_id: uuid.UUID) -> CallerOverrides:
        """The caller's limits as now stored, with its row locked until this transaction ends.

        Every admission of a render takes this lock first, so two concurrent creates cannot both read the
        same spend and both pass. `FOR NO KEY UPDATE` does not block foreign-key checks of other inserts.
        """
        statement = (
            select(
                Caller.requests_per_minute,
                Caller.max_concurrent_renders,
                Caller.budget_usd_per_period,
                Caller.budget_period,
            )
            .where(Caller.id == caller_id)
            .with_for_update(key_share=True)
        )
        row = (await self.session.execute(statement)).one()
        return CallerOverrides(
            requests_per_minute=row[0],
            max_concurrent_renders=row[1],
            budget_usd_per_period=row[2],
            budget_period=row[3],
        )

    async def period_bounds(self, period: Literal["day", "month"]) -> tuple[datetime, datetime]:
        """The database's now() and the start of the current UTC day or month."""
        row = (await self.session.execute(select(func.now(), func.date_trunc(period, func.now(), "UTC")))).one()
        return row[0], row[1]

    async def billed_seconds_by_model(self, caller_id: uuid.UUID, *, since: datetime) -> dict[str, int]:
        """Seconds charged or reserved since `since`, per model: every render except failed ones that
        upstream certainly did not bill. Deleted videos still count: the money was spent."""
        statement = (
            select(Video.model, func.sum(charged_seconds()))
            .where(Video.caller_id == caller_id, Video.created_at >= since, billable())
            .group_by(Video.model)
        )
        return {model: int(total or 0) for model, total in (await self.session.execute(statement)).all()}

    async def active_renders(self, caller_id: uuid.UUID) -> int:
        """Renders queued or in progress (including creates still in flight upstream)."""
        statement = (
            select(func.count())
            .select_from(Video)
            .where(Video.caller_id == caller_id, Video.status.in_(ACTIVE_STATUSES), Video.deleted_at.is_(None))
        )
        return int((await self.session.execute(statement)).scalar_one())

    # ----- usage --------------------------------------------------------------------------------

    async def usage(self, caller_id: uuid.UUID, *, start: datetime, end: datetime) -> list[UsageRow]:
        """Per UTC day and model, renders created in [start, end) by outcome, and the billed seconds."""
        day = func.date(func.timezone("UTC", Video.created_at)).label("day")
        statement = (
            select(day, Video.model, *_outcome_columns())
            .where(Video.caller_id == caller_id, Video.created_at >= start, Video.created_at < end)
            .group_by(day, Video.model)
            .order_by(day, Video.model)
        )
        return [
            UsageRow(
                day=row[0],
                model=row[1],
                renders=row[2],
                completed=row[3],
                pending=row[4],
                failed=row[5],
                moderation_blocked=row[6],
                billed_renders=row[7],
                billed_seconds=int(row[8]),
            )
            for row in (await self.session.execute(statement)).all()
        ]

    async def usage_by_profile(self, caller_id: uuid.UUID, *, start: datetime, end: datetime) -> list[ProfileUsageRow]:
        """Per upstream profile and model, renders created in [start, end) by outcome, and the billed seconds."""
        statement = (
            select(Video.upstream_profile, Video.model, *_outcome_columns())
            .where(Video.caller_id == caller_id, Video.created_at >= start, Video.created_at < end)
            .group_by(Video.upstream_profile, Video.model)
            .order_by(Video.upstream_profile, Video.model)
        )
        return [
            ProfileUsageRow(
                profile=row[0],
                model=row[1],
                renders=row[2],
                completed=row[3],
                pending=row[4],
                failed=row[5],
                moderation_blocked=row[6],
                billed_renders=row[7],
                billed_seconds=int(row[8]),
            )
            for row in (await self.session.execute(statement)).all()
        ]

    # ----- overrides ----------------------------------------------------------------------------

    async def caller_overrides(self, caller_id: uuid.UUID) -> CallerOverrides | None:
        caller = await self.session.get(Caller, caller_id, populate_existing=True)
        if caller is None:
            return None
        return CallerOverrides(
            requests_per_minute=caller.requests_per_minute,
            max_concurrent_renders=caller.max_concurrent_renders,
            budget_usd_per_period=caller.budget_usd_per_period,
            budget_period=caller.budget_period,
        )

    async def set_overrides(self, caller_id: uuid.UUID, values: dict[str, object]) -> None:
        if values:
            await self.session.execute(
                update(Caller)
                .where(Caller.id == caller_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
