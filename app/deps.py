"""The routes' dependencies, in one place: the `Annotated` aliases a route declares its parameters with.

Each resource alias reads the app's `AppResources` (app/core/resources.py), built once by the lifespan. The
caller aliases authenticate the request (the logic is app/auth/deps.py). `SessionDep` owns the request's
transaction: it commits when the route returns and rolls back on error, before the response is sent
(`scope="function"`), so a streamed response holds no connection; services only `flush()`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.archive.storage import ArchiveStorage
from app.auth import deps as auth
from app.auth.bad_keys import BadKeyCache
from app.auth.service import Principal
from app.auth.throttle import AdminKeyThrottle
from app.characters.service import CharacterService
from app.console.session import SessionKeys
from app.console.tap import DeliveryLog
from app.core.config import Settings
from app.core.resources import resources
from app.models import ApiKey, Caller
from app.upstream.router import UpstreamRouter
from app.videos.service import VideoService

# ----- the app's resources ----------------------------------------------------------------------------


def get_settings(request: Request) -> Settings:
    return resources(request).settings


async def get_session(request: Request) -> AsyncIterator[AsyncSession]:
    async with resources(request).database.sessionmaker() as session:
        try:
            yield session
        except BaseException:
            await session.rollback()
            raise
        else:
            await session.commit()


def get_video_service(request: Request) -> VideoService:
    return resources(request).video_service


def get_character_service(request: Request) -> CharacterService:
    return resources(request).character_service


def get_upstreams(request: Request) -> UpstreamRouter:
    return resources(request).upstreams


def get_archive_storage(request: Request) -> ArchiveStorage:
    return resources(request).archive_storage


def get_admin_throttle(request: Request) -> AdminKeyThrottle:
    return resources(request).admin_throttle


def get_bad_keys(request: Request) -> BadKeyCache:
    return resources(request).bad_keys


def get_console_keys(request: Request) -> SessionKeys | None:
    return resources(request).console_keys


def get_console_deliveries(request: Request) -> DeliveryLog:
    return resources(request).console_deliveries


SettingsDep = Annotated[Settings, Depends(get_settings)]
SessionDep = Annotated[AsyncSession, Depends(get_session, scope="function")]
VideoServiceDep = Annotated[VideoService, Depends(get_video_service)]
CharacterServiceDep = Annotated[CharacterService, Depends(get_character_service)]
UpstreamsDep = Annotated[UpstreamRouter, Depends(get_upstreams)]
ArchiveStorageDep = Annotated[ArchiveStorage, Depends(get_archive_storage)]
AdminThrottle = Annotated[AdminKeyThrottle, Depends(get_admin_throttle)]
BadKeys = Annotated[BadKeyCache, Depends(get_bad_keys)]
ConsoleKeysDep = Annotated[SessionKeys | None, Depends(get_console_keys)]
DeliveryLogDep = Annotated[DeliveryLog, Depends(get_console_deliveries)]

# ----- who is calling (app/auth/deps.py) --------------------------------------------------------------

CurrentPrincipal = Annotated[Principal, Depends(auth.get_principal)]
CurrentCaller = Annotated[Caller, Depends(auth.get_current_caller)]  # detached: use its id, not its relationships
CurrentKey = Annotated[ApiKey, Depends(auth.get_current_key)]
AdminAuth = Depends(auth.require_admin)
