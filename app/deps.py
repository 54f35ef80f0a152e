"""The routes' dependencies, in one place: the `Annotated` aliases a route declares its parameters with.

Each resource alias reads the app's `AppResources` (app/core/resources.py), built once by the lifespan. The
caller aliases authenticate the request (app/auth/deps.py) and check its key's request rate (app/limits): the
two domains meet here, so auth imports nothing of limits. `SessionDep` owns the request's
transaction: it commits when the route returns and rolls back on error, before the response is sent
(`scope="function"`), so a streamed response holds no connection; services only `flush()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.archive.storage import ArchiveStorage
from app.auth import deps as auth
from app.auth.key_cache import KeyCache
from app.auth.service import Principal
from app.auth.throttle import AdminKeyThrottle
from app.characters.service import CharacterService
from app.console.session import SessionKeys
from app.console.tap import DeliveryLog
from app.core.config import Settings
from app.core.db import Database
from app.core.resources import resources
from app.limits import service as limits_service
from app.models import ApiKey, Caller
from app.upstream.router import UpstreamRouter
from app.videos.service import VideoService

# ----- the app's resources ----------------------------------------------------------------------------


async def get_settings(request: Request) -> Settings:
    return resources(request).settings


@asynccontextmanager
async def request_transaction(request: Request) -> AsyncIterator[AsyncSession]:
    """The request's one transaction: committed when the route returns, rolled back if it raises. Every
    session a route gets comes from here (`SessionDep`, and the webhook receiver's own dependency, which
    only adds its 503 and its metrics around it)."""
    # A create commits mid-request, before its paid call (decision 004), and goes on in a new transaction on the
    # same session: `Database.transaction()` allows that.
    async with resources(request).database.transaction() as session:
        yield session


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with request_transaction(request) as session:
        yield session


async def get_database(request: Request) -> Database:
    """The app's database, for routes whose reads run alone on the driver (decision 013) and open a session only
    when they must write."""
    return resources(request).database


async def get_video_service(request: Request) -> VideoService:
    return resources(request).video_service


async def get_character_service(request: Request) -> CharacterService:
    return resources(request).character_service


async def get_upstreams(request: Request) -> UpstreamRouter:
    return resources(request).upstreams


async def get_archive_storage(request: Request) -> ArchiveStorage:
    return resources(request).archive_storage


async def get_admin_throttle(request: Request) -> AdminKeyThrottle:
    return resources(request).admin_throttle


async def get_key_cache(request: Request) -> KeyCache:
    return resources(request).key_cache


async def get_console_keys(request: Request) -> SessionKeys | None:
    return resources(request).console_keys


async def get_console_deliveries(request: Request) -> DeliveryLog:
    return resources(request).console_deliveries


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
DatabaseDep = Annotated[Database, Depends(get_database)]
VideoServiceDep = Annotated[VideoService, Depends(get_video_service)]
CharacterServiceDep = Annotated[CharacterService, Depends(get_character_service)]
UpstreamsDep = Annotated[UpstreamRouter, Depends(get_upstreams)]
ArchiveStorageDep = Annotated[ArchiveStorage, Depends(get_archive_storage)]
AdminThrottle = Annotated[AdminKeyThrottle, Depends(get_admin_throttle)]
KnownKeys = Annotated[KeyCache, Depends(get_key_cache)]
ConsoleKeysDep = Annotated[SessionKeys | None, Depends(get_console_keys)]
DeliveryLogDep = Annotated[DeliveryLog, Depends(get_console_deliveries)]

# ----- who is calling (app/auth/deps.py), within its key's request rate (app/limits) ------------------


async def get_principal(request: Request) -> Principal:
    """The authenticated caller and key of an API request, admitted by the key's request rate (one statement
    alone on the driver: the counter's row lock is released before the route runs)."""
    limits = resources(request).settings.limits

    async def admit(database: Database, principal: Principal) -> None:
        await limits_service.admit_request(
            database, api_key=principal.api_key, caller=principal.caller, settings=limits
        )

    return await auth.authenticate_request(request, admit=admit)


async def get_current_caller(principal: Annotated[Principal, Depends(get_principal)]) -> Caller:
    """The caller (detached from any session: use its id, not its relationships)."""
    return principal.caller


async def get_current_key(principal: Annotated[Principal, Depends(get_principal)]) -> ApiKey:
    return principal.api_key


CurrentPrincipal = Annotated[Principal, Depends(get_principal)]
CurrentCaller = Annotated[Caller, Depends(get_current_caller)]  # detached: use its id, not its relationships
CurrentKey = Annotated[ApiKey, Depends(get_current_key)]
AdminAuth = Depends(auth.require_admin)
