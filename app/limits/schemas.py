"""Wire shapes of `/v1/usage` and of the admin API for limits (`/v1/admin/callers/{caller_id}/limits`).

The admin API's callers and keys are auth's (app/auth/schemas.py), whose strictness and bounds these share."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import BaseModel, Field

from app.auth.repository import CallerOverrides
from app.auth.schemas import MAX_INT4, STRICT
from app.limits.service import EffectiveLimits, LimitsView, UsageReport
from app.models import ApiKey

MONEY_PLACES = 6


def money(amount: Decimal) -> float:
    return float(round(amount, MONEY_PLACES))


# ----- usage --------------------------------------------------------------------------------------


class UsageCounts(BaseModel):
    renders: int = Field(description="Renders created (every outcome)")
    completed: int
    in_progress: int = Field(description="Queued or in progress (reserved at full price)")
    failed: int = Field(description="Failed for any reason but moderation")
    moderation_blocked: int
    billed_renders: int = Field(description="Renders counted toward spend")
    seconds: int = Field(description="Billed seconds")
    cost_usd: float


class UsageBucket(UsageCounts):
    object: Literal["usage.bucket"] = "usage.bucket"
    date: date
    model: str


class ProviderUsage(UsageCounts):
    object: Literal["usage.provider"] = "usage.provider"
    profile: str = Field(description="The upstream profile that rendered them")
    kind: str | None = Field(
        description="The profile's provider kind (openai, gemini, seedance, fal, replicate); null for a profile "
        "no longer configured"
    )


class CurrentPeriod(BaseModel):
    period: Literal["day", "month"]
    start: datetime
    end: datetime
    budget_usd: float
    spent_usd: float
    remaining_usd: float


class UsageLimits(BaseModel):
    requests_per_minute: int = Field(description="For the key of this request")
    max_concurrent_renders: int
    active_renders: int


class UsageResponse(BaseModel):
    object: Literal["usage"] = "usage"
    start_date: date
    end_date: date
    data: list[UsageBucket]
    totals: UsageCounts
    providers: list[ProviderUsage] = Field(
        description="The same renders per upstream profile (the provider that rendered them, a fallback's "
        "included), priced at the model the caller asked for"
    )
    current_period: CurrentPeriod
    limits: UsageLimits

    @classmethod
    def from_report(cls, report: UsageReport, *, key: ApiKey) -> UsageResponse:
        buckets = [
            UsageBucket(
                date=line.row.day,
                model=line.row.model,
                renders=line.row.renders,
                completed=line.row.completed,
                in_progress=line.row.pending,
                failed=line.row.failed,
                moderation_blocked=line.row.moderation_blocked,
                billed_renders=line.row.billed_renders,
                seconds=line.row.billed_seconds,
                cost_usd=money(line.cost_usd),
            )
            for line in report.lines
        ]
        totals = UsageCounts(
            renders=sum(line.row.renders for line in report.lines),
            completed=sum(line.row.completed for line in report.lines),
            in_progress=sum(line.row.pending for line in report.lines),
            failed=sum(line.row.failed for line in report.lines),
            moderation_blocked=sum(line.row.moderation_blocked for line in report.lines),
            billed_renders=sum(line.row.billed_renders for line in report.lines),
            seconds=sum(line.row.billed_seconds for line in report.lines),
            cost_usd=money(sum((line.cost_usd for line in report.lines), Decimal(0))),
        )
        providers = [
            ProviderUsage(
                profile=line.profile,
                kind=line.kind,
                renders=line.renders,
                completed=line.completed,
                in_progress=line.pending,
                failed=line.failed,
                moderation_blocked=line.moderation_blocked,
                billed_renders=line.billed_renders,
                seconds=line.billed_seconds,
                cost_usd=money(line.cost_usd),
            )
            for line in report.providers
        ]
        period = report.current_period
        return cls(
            start_date=report.start_date,
            end_date=report.end_date,
            data=buckets,
            totals=totals,
            providers=providers,
            current_period=CurrentPeriod(
                period=period.period,
                start=period.start,
                end=period.end,
                budget_usd=money(period.budget_usd),
                spent_usd=money(period.spent_usd),
                remaining_usd=money(max(Decimal(0), period.budget_usd - period.spent_usd)),
            ),
            limits=UsageLimits(
                requests_per_minute=key.requests_per_minute or report.limits.requests_per_minute,
                max_concurrent_renders=report.limits.max_concurrent_renders,
                active_renders=report.active_renders,
            ),
        )


# ----- admin: limits ------------------------------------------------------------------------------


class LimitsUpdate(BaseModel):
    """Fields present are set; null clears an override (the default applies again); absent ones stay."""

    model_config = STRICT
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT4)
    max_concurrent_renders: int | None = Field(default=None, ge=0, le=MAX_INT4)
    budget_usd_per_period: Decimal | None = Field(default=None, ge=0, max_digits=12, decimal_places=4)
    budget_period: Literal["day", "month"] | None = None


class LimitValues(BaseModel):
    requests_per_minute: int | None
    max_concurrent_renders: int | None
    budget_usd_per_period: float | None
    budget_period: Literal["day", "month"] | None

    @classmethod
    def of(cls, values: CallerOverrides | EffectiveLimits) -> LimitValues:
        budget = values.budget_usd_per_period
        return cls(
            requests_per_minute=values.requests_per_minute,
            max_concurrent_renders=values.max_concurrent_renders,
            budget_usd_per_period=None if budget is None else money(budget),
            budget_period=values.budget_period,
        )


class LimitsObject(BaseModel):
    object: Literal["caller.limits"] = "caller.limits"
    caller_id: uuid.UUID
    overrides: LimitValues = Field(description="What is set for this caller (null: the default)")
    effective: LimitValues = Field(description="What applies")

    @classmethod
    def from_view(cls, view: LimitsView) -> LimitsObject:
        return cls(
            caller_id=view.caller_id, overrides=LimitValues.of(view.overrides), effective=LimitValues.of(view.effective)
        )
