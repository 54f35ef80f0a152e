"""`/v1/callbacks`: the caller's signing secret, standing endpoints and delivery log."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Path, Query

from app.auth import service as auth_service
from app.callbacks import service as callbacks_service
from app.callbacks.schemas import (
    DeliveryList,
    DeliveryObject,
    EndpointCreate,
    EndpointDeleted,
    EndpointList,
    EndpointObject,
    SecretObject,
)
from app.core.json_route import JsonBodyRoute
from app.deps import AdminAuth, CurrentCaller, SessionDep, SettingsDep

# Endpoint ids (`cbe_…`), delivery ids (`msg_…`) and video ids (`video_…`) all fit; a NUL or another control
# character would reach Postgres (which refuses NUL in text with an error, a 500) and is a 400 instead.
ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"

router = APIRouter(prefix="/v1/callbacks", tags=["callbacks"], route_class=JsonBodyRoute)


@router.get("/secret", response_model=SecretObject, summary="The caller's callback signing secret")
async def get_secret(session: SessionDep, caller: CurrentCaller) -> SecretObject:
    return SecretObject.from_row(await callbacks_service.get_secret(session, caller=caller))


@router.post("/secret/rotate", response_model=SecretObject, summary="Rotate the callback signing secret")
async def rotate_secret(session: SessionDep, caller: CurrentCaller, settings: SettingsDep) -> SecretObject:
    secret = await callbacks_service.rotate_secret(session, caller=caller, settings=settings.callbacks)
    return SecretObject.from_row(secret)


@router.post("/endpoints", response_model=EndpointObject, summary="Subscribe a standing callback endpoint")
async def create_endpoint(
    body: EndpointCreate, session: SessionDep, caller: CurrentCaller, settings: SettingsDep
) -> EndpointObject:
    endpoint = await callbacks_service.create_endpoint(
        session, caller=caller, url=body.url, settings=settings.callbacks
    )
    return EndpointObject.from_row(endpoint)


@router.get("/endpoints", response_model=EndpointList, summary="List the caller's standing callback endpoints")
async def list_endpoints(session: SessionDep, caller: CurrentCaller) -> EndpointList:
    endpoints = await callbacks_service.list_endpoints(session, caller=caller)
    return EndpointList(data=[EndpointObject.from_row(endpoint) for endpoint in endpoints])


@router.delete("/endpoints/{endpoint_id}", response_model=EndpointDeleted, summary="Remove a callback endpoint")
async def delete_endpoint(
    endpoint_id: Annotated[str, Path(pattern=ID_PATTERN)], session: SessionDep, caller: CurrentCaller
) -> EndpointDeleted:
    await callbacks_service.delete_endpoint(session, caller=caller, endpoint_id=endpoint_id)
    return EndpointDeleted(id=endpoint_id)


@router.get("/deliveries", response_model=DeliveryList, summary="The caller's callback delivery log")
async def list_deliveries(
    session: SessionDep,
    caller: CurrentCaller,
    after: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    video_id: Annotated[str | None, Query(pattern=ID_PATTERN)] = None,
) -> DeliveryList:
    records = await callbacks_service.list_deliveries(
        session, caller=caller, limit=limit + 1, after=after, video_id=video_id
    )
    page = [DeliveryObject.from_record(record) for record in records[:limit]]
    return DeliveryList(
        data=page,
        first_id=page[0].id if page else None,
        last_id=page[-1].id if page else None,
        has_more=len(records) > limit,
    )


admin_router = APIRouter(
    prefix="/v1/admin/callers", tags=["admin"], dependencies=[AdminAuth], route_class=JsonBodyRoute
)


@admin_router.get(
    "/{caller_id}/callback-secret", response_model=SecretObject, summary="A caller's callback signing secret"
)
async def admin_get_secret(caller_id: uuid.UUID, session: SessionDep) -> SecretObject:
    caller = await auth_service.get_caller(session, caller_id=caller_id)
    return SecretObject.from_row(await callbacks_service.get_secret(session, caller=caller))


@admin_router.post(
    "/{caller_id}/callback-secret/rotate",
    response_model=SecretObject,
    summary="Rotate a caller's callback signing secret (the old one also signs for a grace period)",
)
async def admin_rotate_secret(caller_id: uuid.UUID, session: SessionDep, settings: SettingsDep) -> SecretObject:
    caller = await auth_service.get_caller(session, caller_id=caller_id)
    secret = await callbacks_service.rotate_secret(session, caller=caller, settings=settings.callbacks)
    return SecretObject.from_row(secret)
