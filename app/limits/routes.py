"""`GET /v1/usage` for callers, and the admin API `/v1/admin/*` (callers, keys, limits) for operators."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query

from app.auth import service as auth_service
from app.core.errors import InvalidRequest
from app.core.json_body import JsonBodyRoute
from app.deps import AdminAuth, BadKeys, CurrentCaller, CurrentKey, SessionDep, SettingsDep
from app.limits import service as limits_service
from app.limits.schemas import (
    CallerCreate,
    CallerCreated,
    CallerList,
    CallerObject,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyObject,
    KeyUpdate,
    LimitsObject,
    LimitsUpdate,
    UsageResponse,
)

DEFAULT_USAGE_DAYS = 30
MAX_USAGE_DAYS = 366

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


admin = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminAuth], route_class=JsonBodyRoute)


@admin.post("/callers", status_code=201, response_model=CallerCreated, summary="Create a caller and its first key")
async def create_caller(body: CallerCreate, session: SessionDep, refused: BadKeys) -> CallerCreated:
    issued = await auth_service.create_caller(session, name=body.name, label=body.label, expires_at=body.expires_at)
    refused.clear()  # a new key must not be refused from memory by this process (app/auth/bad_keys.py)
    return CallerCreated(
        caller=CallerObject.from_row(issued.caller),
        key=KeyCreated(**KeyObject.from_row(issued.api_key).model_dump(), key=issued.key),
    )


@admin.get("/callers", response_model=CallerList, summary="List callers")
async def list_callers(session: SessionDep) -> CallerList:
    return CallerList(data=[CallerObject.from_row(caller) for caller in await auth_service.list_callers(session)])


@admin.post("/callers/{caller_id}/keys", status_code=201, response_model=KeyCreated, summary="Add a key (shown once)")
async def create_key(caller_id: uuid.UUID, body: KeyCreate, session: SessionDep, refused: BadKeys) -> KeyCreated:
    caller = await auth_service.get_caller(session, caller_id=caller_id)
    issued = await auth_service.add_key(
        session,
        caller=caller,
        label=body.label,
        expires_at=body.expires_at,
        requests_per_minute=body.requests_per_minute,
    )
    refused.clear()  # a new key must not be refused from memory by this process (app/auth/bad_keys.py)
    return KeyCreated(**KeyObject.from_row(issued.api_key).model_dump(), key=issued.key)


@admin.get("/callers/{caller_id}/keys", response_model=KeyList, summary="List a caller's keys (prefixes only)")
async def list_caller_keys(caller_id: uuid.UUID, session: SessionDep) -> KeyList:
    await auth_service.get_caller(session, caller_id=caller_id)
    rows = await auth_service.list_keys(session, caller_id=caller_id)
    return KeyList(data=[KeyObject.from_key_row(row) for row in rows])


@admin.get("/keys", response_model=KeyList, summary="List every key (prefixes only)")
async def list_keys(session: SessionDep) -> KeyList:
    return KeyList(data=[KeyObject.from_key_row(row) for row in await auth_service.list_keys(session)])


@admin.patch("/keys/{key_id}", response_model=KeyObject, summary="Set or clear a key's request rate")
async def update_key(key_id: uuid.UUID, body: KeyUpdate, session: SessionDep) -> KeyObject:
    key = await auth_service.set_key_rate(session, key_id=key_id, requests_per_minute=body.requests_per_minute)
    return KeyObject.from_row(key)


@admin.delete("/keys/{key_id}", response_model=KeyObject, summary="Revoke a key (effective at once)")
async def revoke_key(key_id: uuid.UUID, session: SessionDep) -> KeyObject:
    return KeyObject.from_row(await auth_service.revoke_key(session, key_id=key_id))


@admin.get("/callers/{caller_id}/limits", response_model=LimitsObject, summary="A caller's limits")
async def get_limits(caller_id: uuid.UUID, session: SessionDep, settings: SettingsDep) -> LimitsObject:
    view = await limits_service.get_limits(session, caller_id=caller_id, settings=settings.limits)
    return LimitsObject.from_view(view)


@admin.patch("/callers/{caller_id}/limits", response_model=LimitsObject, summary="Set or clear a caller's limits")
async def update_limits(
    caller_id: uuid.UUID, body: LimitsUpdate, session: SessionDep, settings: SettingsDep
) -> LimitsObject:
    changes = body.model_dump(include=body.model_fields_set)
    view = await limits_service.update_limits(session, caller_id=caller_id, changes=changes, settings=settings.limits)
    return LimitsObject.from_view(view)


router.include_router(admin)
