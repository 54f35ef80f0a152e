"""The admin API for callers and their keys (`/v1/admin/callers`, `/v1/admin/keys`), for operators.

Every route takes the operator's key (`AdminAuth`). A caller's limits, under the same prefix, are the limits
domain's (app/limits/routes.py).
"""

from __future__ import annotations

import uuid

from fastapi import APIRouter

from app.auth import service as auth_service
from app.auth.schemas import (
    CallerCreate,
    CallerCreated,
    CallerList,
    CallerObject,
    KeyCreate,
    KeyCreated,
    KeyList,
    KeyObject,
    KeyUpdate,
)
from app.core.json_route import JsonBodyRoute
from app.deps import AdminAuth, KnownKeys, SessionDep

# JSON bodies are read by the shared parser (app/core/json_body.py): duplicate keys and deep nesting are 400s.
router = APIRouter(prefix="/v1/admin", tags=["admin"], dependencies=[AdminAuth], route_class=JsonBodyRoute)


@router.post("/callers", status_code=201, response_model=CallerCreated, summary="Create a caller and its first key")
async def create_caller(body: CallerCreate, session: SessionDep, known_keys: KnownKeys) -> CallerCreated:
    issued = await auth_service.create_caller(session, name=body.name, label=body.label, expires_at=body.expires_at)
    known_keys.forget_refused_keys()  # a new key must not be refused from memory here (app/auth/key_cache.py)
    return CallerCreated(
        caller=CallerObject.from_row(issued.caller),
        key=KeyCreated(**KeyObject.from_row(issued.api_key).model_dump(), key=issued.key),
    )


@router.get("/callers", response_model=CallerList, summary="List callers")
async def list_callers(session: SessionDep) -> CallerList:
    return CallerList(data=[CallerObject.from_row(caller) for caller in await auth_service.list_callers(session)])


@router.post("/callers/{caller_id}/keys", status_code=201, response_model=KeyCreated, summary="Add a key (shown once)")
async def create_key(caller_id: uuid.UUID, body: KeyCreate, session: SessionDep, known_keys: KnownKeys) -> KeyCreated:
    caller = await auth_service.get_caller(session, caller_id=caller_id)
    issued = await auth_service.add_key(
        session,
        caller=caller,
        label=body.label,
        expires_at=body.expires_at,
        requests_per_minute=body.requests_per_minute,
    )
    known_keys.forget_refused_keys()  # a new key must not be refused from memory here (app/auth/key_cache.py)
    return KeyCreated(**KeyObject.from_row(issued.api_key).model_dump(), key=issued.key)


@router.get("/callers/{caller_id}/keys", response_model=KeyList, summary="List a caller's keys (prefixes only)")
async def list_caller_keys(caller_id: uuid.UUID, session: SessionDep) -> KeyList:
    await auth_service.get_caller(session, caller_id=caller_id)
    rows = await auth_service.list_keys(session, caller_id=caller_id)
    return KeyList(data=[KeyObject.from_key_row(row) for row in rows])


@router.get("/keys", response_model=KeyList, summary="List every key (prefixes only)")
async def list_keys(session: SessionDep) -> KeyList:
    return KeyList(data=[KeyObject.from_key_row(row) for row in await auth_service.list_keys(session)])


@router.patch("/keys/{key_id}", response_model=KeyObject, summary="Set or clear a key's request rate")
async def update_key(key_id: uuid.UUID, body: KeyUpdate, session: SessionDep, known_keys: KnownKeys) -> KeyObject:
    key = await auth_service.set_key_rate(session, key_id=key_id, requests_per_minute=body.requests_per_minute)
    known_keys.forget_good_keys()  # this process applies the new rate at once; others within 1 s
    return KeyObject.from_row(key)


@router.delete("/keys/{key_id}", response_model=KeyObject, summary="Revoke a key (refused on every replica within 1 s)")
async def revoke_key(key_id: uuid.UUID, session: SessionDep, known_keys: KnownKeys) -> KeyObject:
    revoked = await auth_service.revoke_key(session, key_id=key_id)
    known_keys.forget_good_keys()  # this process refuses the key at once; others within 1 s (app/auth/key_cache.py)
    return KeyObject.from_row(revoked)
