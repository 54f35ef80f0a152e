"""Wire shapes of `/v1/usage` and `/v1/admin/*`. No key digest or lookup ever appears in any of them."""

from __future__ import annotations

import uuid
from datetime import date, datetime
from decimal import Decimal
from typing import Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.auth.repository import KeyRow
from app.limits.repository import CallerOverrides
from app.limits.service import EffectiveLimits, LimitsView, UsageReport
from app.models import ApiKey, Caller

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


# ----- admin: callers and keys --------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid")
# What Postgres would refuse with an error (a 500) is refused here with a 400: the counters are INTEGER
# columns, and text cannot hold a NUL (labels are printable, as the console shows them).
MAX_INT4 = 2**31 - 1
PRINTABLE = r"^[^\x00-\x1f\x7f]*$"


class CallerCreate(BaseModel):
    model_config = _STRICT
    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    label: str = Field(default="", max_length=200, pattern=PRINTABLE, description="Label of the first key")
    expires_at: AwareDatetime | None = Field(default=None, description="Expiry of the first key")


class KeyCreate(BaseModel):
    model_config = _STRICT
    label: str = Field(default="", max_length=200, pattern=PRINTABLE)
    expires_at: AwareDatetime | None = None
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT4)


class KeyUpdate(BaseModel):
    model_config = _STRICT
    requests_per_minute: int | None = Field(default=None, ge=1, le=MAX_INT4, description="null: the caller's limit")


class CallerObject(BaseModel):
    object: Literal["caller"] = "caller"
    id: uuid.UUID
    name: str
    created_at: datetime
    disabled_at: datetime | None

    @classmethod
    def from_row(cls, caller: Caller) -> CallerObject:
        return cls(id=caller.id, name=caller.name, created_at=caller.created_at, disabled_at=caller.disabled_at)


class CallerList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CallerObject]


class KeyObject(BaseModel):
    object: Literal["api_key"] = "api_key"
    id: uuid.UUID
    caller_id: uuid.UUID
    prefix: str = Field(description="The first characters of the key, to tell keys apart")
    label: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None = None
    requests_per_minute: int | None

    @classmethod
    def from_row(cls, key: ApiKey, *, last_used_at: datetime | None = None) -> KeyObject:
        return cls(
            id=key.id,
            caller_id=key.caller_id,
            prefix=key.prefix,
            label=key.label,
            created_at=key.created_at,
            expires_at=key.expires_at,
            revoked_at=key.revoked_at,
            last_used_at=last_used_at,
            requests_per_minute=key.requests_per_minute,
        )

    @classmethod
    def from_key_row(cls, row: KeyRow) -> KeyObject:
        return cls.from_row(row.key, last_used_at=row.last_used_at)


class KeyCreated(KeyObject):
    key: str = Field(description="The key itself; shown this once, stored only as a digest")


class KeyList(BaseModel):
    object: Literal["list"] = "list"
    data: list[KeyObject]


class CallerCreated(BaseModel):
    caller: CallerObject
    key: KeyCreated


# ----- admin: limits ------------------------------------------------------------------------------


class LimitsUpdate(BaseModel):
    """Fields present are set; null clears an override (the default applies again); absent ones stay."""

    model_config = _STRICT
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
