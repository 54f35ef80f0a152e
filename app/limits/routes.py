"""`GET /v1/usage` for callers, and a caller's limits in the admin API (`/v1/admin/callers/{caller_id}/limits`).

The admin API's callers and keys, under the same prefix, are auth's (app/auth/routes.py); the app factory
includes `router`, auth's router, then `admin_router`, the order of the paths in openapi.yaml.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from app.core.errors import InvalidRequest
from app.core.json_route import JsonBodyRoute
from app.deps import AdminAuth, CurrentCaller, CurrentKey, KnownKeys, SessionDep, SettingsDep
from app.limits import service as limits_service
from app.limits.schemas import LimitsObject, LimitsUpdate, UsageResponse

DEFAULT_USAGE_DAYS = 30
MAX_USAGE_DAYS = 366
# The days a report may name: nothing was rendered before 1970, and the day after the last one (the report's
# exclusive end) must still be a date, as must the default start 29 days before the first.
USAGE_DAYS_FROM = date(1970, 1, 1)
USAGE_DAYS_TO = date(9998, 12, 31)

# JSON bodies are read by the shared parser (app/core/json_body.py): duplicate keys and deep nesting are 400s.
router = APIRouter(route_class=JsonBodyRoute)


@router.get("/v1/usage", response_model=UsageResponse, tags=["usage"], summary="The caller's renders, seconds and cost")
async def get_usage(
    caller: CurrentCaller,
    key: CurrentKey,
    session: SessionDep,
    settings: SettingsDep,
    start_date: Annotated[date | None, Query(description="First UTC day (default: 29 days before end_date)")] = None,
    end_date: Annotated[date | None, Query(description="Last UTC day, inclusive (default: today)")] = None,
) -> UsageResponse:
    for param, day in (("start_date", start_date), ("end_date", end_date)):
        if day is not None and not USAGE_DAYS_FROM <= day <= USAGE_DAYS_TO:
            raise InvalidRequest(
                f"'{param}' must be a day from {USAGE_DAYS_FROM} to {USAGE_DAYS_TO}.", param=param, code="invalid_value"
            )
    end = end_date or datetime.now(UTC).date()
    start = start_date or end - timedelta(days=DEFAULT_USAGE_DAYS - 1)
    if start > end or (end - start).days >= MAX_USAGE_DAYS:
        raise InvalidRequest(
            f"'start_date' must be on or before 'end_date', at most {MAX_USAGE_DAYS} days apart.",
            param="start_date",
            code="invalid_value",
        )
    report = await limits_service.usage(
        session,
        caller=caller,
        start_date=start,
        end_date=end,
        settings=settings.limits,
        profile_kinds=settings.profile_kinds(),
    )
    return UsageResponse.from_report(report, key=key)


admin_router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminAuth], route_class=JsonBodyRoute)


@admin_router.get("/callers/{caller_id}/limits", response_model=LimitsObject, summary="A caller's limits")
async def get_limits(caller_id: uuid.UUID, session: SessionDep, settings: SettingsDep) -> LimitsObject:
    view = await limits_service.get_limits(session, caller_id=caller_id, settings=settings.limits)
    return LimitsObject.from_view(view)


@admin_router.patch(
    "/callers/{caller_id}/limits", response_model=LimitsObject, summary="Set or clear a caller's limits"
)
async def update_limits(
    caller_id: uuid.UUID, body: LimitsUpdate, session: SessionDep, settings: SettingsDep, known_keys: KnownKeys
) -> LimitsObject:
    changes = body.model_dump(include=body.model_fields_set)
    view = await limits_service.update_limits(session, caller_id=caller_id, changes=changes, settings=settings.limits)
    known_keys.forget_good_keys()  # the caller's request rate rides on its remembered keys (app/auth/key_cache.py)
    return LimitsObject.from_view(view)
