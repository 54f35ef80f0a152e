"""Limits on callers: request rate per key, renders in flight, spend per period; and usage reports.

Decisions (see docs/reference.md#keys-limits-and-usage):

- The request rate is counted per key in Postgres (shared by every replica), as a sliding window over
  one-minute buckets, in one statement per request; only admitted requests count, so a client that honours
  Retry-After gets through.
- A render is admitted under a lock on the caller's row, held until the video row is committed (just
  before the upstream call), so concurrent creates are checked one after another and never overspend.
- Spend is seconds x price of every render created in the current UTC day or month, except failed ones
  upstream did not bill (moderation blocks and other failures): a render in flight is reserved at full
  price, and one whose submission outcome is unknown stays charged. Deleted videos still count.
- A model missing from the price table is charged at the highest listed price: the gateway may not know
  every model name upstream accepts, but it must never under-count spend.
- Prices are per the model the caller asked for, whichever profile rendered it (a fallback's included); the
  usage report also breaks renders and spend down per upstream profile, with the profile's provider kind.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Literal, cast

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.repository import CallerOverrides, CallerRepository
from app.core.config import LimitSettings
from app.core.db import Database, run_without_transaction
from app.core.errors import ResourceNotFound
from app.limits import window
from app.limits.errors import ConcurrentRendersExceeded, QuotaExceeded, RequestRateExceeded
from app.limits.repository import LimitsRepository
from app.models import ApiKey, Caller
from app.videos.repository import ProfileUsageRow, UsageRow, VideoRepository

Period = Literal["day", "month"]
CENT = Decimal("0.01")


@dataclass(frozen=True)
class EffectiveLimits:
    requests_per_minute: int
    max_concurrent_renders: int
    budget_usd_per_period: Decimal
    budget_period: Period


def effective_limits(overrides: CallerOverrides, settings: LimitSettings) -> EffectiveLimits:
    return EffectiveLimits(
        requests_per_minute=overrides.requests_per_minute or settings.requests_per_minute,
        max_concurrent_renders=(
            settings.max_concurrent_renders
            if overrides.max_concurrent_renders is None
            else overrides.max_concurrent_renders
        ),
        budget_usd_per_period=(
            _money(settings.budget_usd_per_period)
            if overrides.budget_usd_per_period is None
            else overrides.budget_usd_per_period
        ),
        budget_period=cast(Period, overrides.budget_period or settings.budget_period),
    )


def price_per_second(model: str, settings: LimitSettings) -> Decimal:
    """The model's price, or the highest listed price for a model the table does not know."""
    prices = settings.prices_usd_per_second
    return _money(prices[model] if model in prices else max(prices.values()))


def render_cost(model: str, seconds: int, settings: LimitSettings) -> Decimal:
    return price_per_second(model, settings) * seconds


def period_end(start: datetime, period: Period) -> datetime:
    if period == "day":
        return start + timedelta(days=1)
    return start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)


# ----- request rate (every authenticated request) -------------------------------------------------


async def admit_request(database: Database, *, api_key: ApiKey, caller: Caller, settings: LimitSettings) -> None:
    """Count one request against the key's rate, or raise 429 with Retry-After (nothing is counted then).

    One statement when admitted, alone on the driver (the counter's row is locked only while it runs); a refusal
    reads the counters once more to say when to retry.
    """
    limit = api_key.requests_per_minute or caller.requests_per_minute or settings.requests_per_minute
    if await LimitsRepository.count_request(
        database, api_key.id, limit=limit, window_seconds=window.WINDOW_SECONDS, slack=window.EPSILON
    ):
        return
    retry_after = 1
    async with database.sessionmaker() as session:
        await run_without_transaction(session)  # one read
        stored = await LimitsRepository.from_session(session).read_window(api_key.id)
    if stored is not None:
        counts = window.counts_at(
            now=stored.now,
            window_start=stored.window_start,
            current=stored.current_count,
            previous=stored.previous_count,
        )
        # Other requests may have moved the window since the refusal: never promise less than a second.
        retry_after = max(1, window.decide(counts, limit=limit).retry_after_seconds)
    raise RequestRateExceeded(
        f"Rate limit reached for this API key: {limit} requests per minute. Please try again in {retry_after}s.",
        retry_after_seconds=retry_after,
    )


# ----- renders (before every paid upstream call) --------------------------------------------------


async def admit_render(
    session: AsyncSession, *, caller: Caller, model: str, seconds: str, settings: LimitSettings
) -> None:
    """Raise (429, before any upstream call) when the caller is over its concurrency or spend budget.

    Takes a lock on the caller's row that the video service's commit of the new row releases, so the
    render admitted here is counted by the next admission.
    """
    limits = effective_limits(await CallerRepository.from_session(session).lock_caller(caller.id), settings)
    now, start = await LimitsRepository.from_session(session).period_bounds(limits.budget_period)
    videos = VideoRepository.from_session(session)
    spent = _spent(await videos.billed_seconds_by_model(caller.id, since=start), settings)
    cost = render_cost(model, int(seconds), settings)
    if spent + cost > limits.budget_usd_per_period:
        end = period_end(start, limits.budget_period)
        raise QuotaExceeded(
            f"You exceeded your current quota: this render costs ${_show(cost)} and ${_show(spent)} of this "
            f"{limits.budget_period}'s ${_show(limits.budget_usd_per_period)} budget is already spent. "
            f"The budget renews at {end.isoformat()}.",
            retry_after_seconds=max(1, int((end - now).total_seconds())),
        )
    active = await videos.active_renders(caller.id)
    if active >= limits.max_concurrent_renders:
        raise ConcurrentRendersExceeded(
            f"Too many renders in progress: {active} of {limits.max_concurrent_renders} allowed at once. "
            "Try again when one has finished.",
            retry_after_seconds=settings.concurrency_retry_after_seconds,
        )


# ----- usage --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class UsageLine:
    row: UsageRow
    cost_usd: Decimal


@dataclass(frozen=True)
class PeriodSpend:
    period: Period
    start: datetime
    end: datetime
    budget_usd: Decimal
    spent_usd: Decimal


@dataclass(frozen=True)
class ProfileUsage:
    """One upstream profile's share of the report: renders by outcome, billed seconds and their cost."""

    profile: str
    kind: str | None  # None: the profile is no longer configured
    renders: int
    completed: int
    pending: int
    failed: int
    moderation_blocked: int
    billed_renders: int
    billed_seconds: int
    cost_usd: Decimal


@dataclass(frozen=True)
class UsageReport:
    start_date: date
    end_date: date
    lines: list[UsageLine]
    current_period: PeriodSpend
    limits: EffectiveLimits
    active_renders: int
    providers: list[ProfileUsage] = field(default_factory=list)


def profile_usage(
    rows: Sequence[ProfileUsageRow], *, kinds: Mapping[str, str], settings: LimitSettings
) -> list[ProfileUsage]:
    """Rows per (profile, model) summed per profile, each model's seconds at that model's price; by profile name."""
    by_profile: dict[str, list[ProfileUsageRow]] = {}
    for row in rows:
        by_profile.setdefault(row.profile, []).append(row)
    return [
        ProfileUsage(
            profile=profile,
            kind=kinds.get(profile),
            renders=sum(row.renders for row in group),
            completed=sum(row.completed for row in group),
            pending=sum(row.pending for row in group),
            failed=sum(row.failed for row in group),
            moderation_blocked=sum(row.moderation_blocked for row in group),
            billed_renders=sum(row.billed_renders for row in group),
            billed_seconds=sum(row.billed_seconds for row in group),
            cost_usd=sum((render_cost(row.model, row.billed_seconds, settings) for row in group), Decimal(0)),
        )
        for profile, group in sorted(by_profile.items())
    ]


async def usage(
    session: AsyncSession,
    *,
    caller: Caller,
    start_date: date,
    end_date: date,
    settings: LimitSettings,
    profile_kinds: Mapping[str, str] | None = None,
) -> UsageReport:
    """The caller's renders, seconds and cost per UTC day and model in [start_date, end_date], the same per
    upstream profile (with its kind from `profile_kinds`), plus where it stands in the current budget period."""
    overrides = await CallerRepository.from_session(session).caller_overrides(caller.id)
    if overrides is None:
        raise ResourceNotFound("No such caller.")
    limits = effective_limits(overrides, settings)
    start = datetime.combine(start_date, time.min, tzinfo=UTC)
    end = datetime.combine(end_date + timedelta(days=1), time.min, tzinfo=UTC)
    videos = VideoRepository.from_session(session)
    rows = await videos.usage_by_day(caller.id, start=start, end=end)
    _, period_start = await LimitsRepository.from_session(session).period_bounds(limits.budget_period)
    spent = _spent(await videos.billed_seconds_by_model(caller.id, since=period_start), settings)
    return UsageReport(
        start_date=start_date,
        end_date=end_date,
        lines=[UsageLine(row=row, cost_usd=render_cost(row.model, row.billed_seconds, settings)) for row in rows],
        current_period=PeriodSpend(
            period=limits.budget_period,
            start=period_start,
            end=period_end(period_start, limits.budget_period),
            budget_usd=limits.budget_usd_per_period,
            spent_usd=spent,
        ),
        limits=limits,
        active_renders=await videos.active_renders(caller.id),
        providers=profile_usage(
            await videos.usage_by_profile(caller.id, start=start, end=end),
            kinds=profile_kinds or {},
            settings=settings,
        ),
    )


# ----- administration of per-caller limits --------------------------------------------------------

OVERRIDE_FIELDS = frozenset({"requests_per_minute", "max_concurrent_renders", "budget_usd_per_period", "budget_period"})


@dataclass(frozen=True)
class LimitsView:
    caller_id: uuid.UUID
    overrides: CallerOverrides
    effective: EffectiveLimits


async def get_limits(session: AsyncSession, *, caller_id: uuid.UUID, settings: LimitSettings) -> LimitsView:
    overrides = await CallerRepository.from_session(session).caller_overrides(caller_id)
    if overrides is None:
        raise ResourceNotFound(f"No caller found with id '{caller_id}'.", param="caller_id")
    return LimitsView(caller_id=caller_id, overrides=overrides, effective=effective_limits(overrides, settings))


async def update_limits(
    session: AsyncSession, *, caller_id: uuid.UUID, changes: Mapping[str, object], settings: LimitSettings
) -> LimitsView:
    """Set (or, with None, clear) per-caller overrides; the next render uses them, and the request rate applies on
    every replica within 1 s (app/auth/key_cache.py)."""
    unknown = set(changes) - OVERRIDE_FIELDS
    if unknown:
        raise ValueError(f"not a limit: {sorted(unknown)}")
    await get_limits(session, caller_id=caller_id, settings=settings)  # 404 for an unknown caller
    await CallerRepository.from_session(session).set_overrides(caller_id, dict(changes))
    return await get_limits(session, caller_id=caller_id, settings=settings)


# ----- money --------------------------------------------------------------------------------------


def _money(value: float) -> Decimal:
    # Through str: Decimal(0.1) is 0.1000000000000000055..., and three 4 s renders at $0.10/s must cost
    # exactly $1.20, or a budget of $1.20 would refuse the third.
    return Decimal(str(value))


def _spent(seconds_by_model: Mapping[str, int], settings: LimitSettings) -> Decimal:
    return sum((render_cost(model, seconds, settings) for model, seconds in seconds_by_model.items()), Decimal(0))


def _show(amount: Decimal) -> str:
    return str(amount.quantize(CENT))
