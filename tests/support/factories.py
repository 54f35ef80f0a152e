"""Rows for tests, written through the ORM models of `app/models`: the one place that knows how to make a caller
or a video, so a schema change is fixed here once and not in every test package.

Each factory takes where to write first:

- an `AsyncSession`: the rows join that session's transaction (flushed, not committed);
- a `Database`: a transaction of their own, committed before the factory returns;
- a database URL (`str`): for synchronous tests (the CLI's: `asyncio.run(make_video(url, ...))`, or
  `tests.support.ops.make_video_sync`); an engine is opened and disposed around the insert.

    caller = await make_caller(database)
    video = await make_video(database, caller=caller, status="in_progress")
    async with database.sessionmaker.begin() as session:  # several rows in one transaction
        rows = [await make_video(session, caller=caller, prompt=f"p{n}") for n in range(3)]
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from enum import Enum
from typing import Any, Final, Literal

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.core.config import DatabaseSettings
from app.core.db import Database
from app.models import Caller, Video, VideoStatus

Target = AsyncSession | Database | str


class _Generated(Enum):
    UPSTREAM_ID = "up_<video id>"


# `make_video`'s default upstream id: `up_<video id>`, a video upstream knows (pass None for one never sent).
GENERATED: Final = _Generated.UPSTREAM_ID


@dataclass(frozen=True)
class MadeCaller:
    """A caller just made, with its one API key (the plain key exists only here)."""

    id: uuid.UUID
    name: str
    key: str
    key_id: uuid.UUID


@asynccontextmanager
async def _session(target: Target) -> AsyncIterator[AsyncSession]:
    if isinstance(target, AsyncSession):
        yield target
        await target.flush()
        return
    if isinstance(target, Database):
        async with target.sessionmaker.begin() as session:
            yield session
        return
    database = Database.connect(DatabaseSettings(url=SecretStr(target), pool_size=1, max_overflow=0))
    try:
        async with database.sessionmaker.begin() as session:
            yield session
    finally:
        await database.dispose()


async def make_caller(target: Target, *, name: str | None = None, key: str | None = None) -> MadeCaller:
    """A caller with one key (`key`, or a generated one), as `video-gateway keys create` makes it."""
    async with _session(target) as session:
        issued = await auth_service.create_caller(session, name=name or f"caller-{uuid.uuid4().hex[:12]}", key=key)
    return MadeCaller(id=issued.caller.id, name=issued.caller.name, key=issued.key, key_id=issued.api_key.id)


async def make_video(
    target: Target,
    *,
    caller: MadeCaller | Caller | uuid.UUID | None = None,
    status: VideoStatus | str = VideoStatus.COMPLETED,
    upstream_id: str | Literal[_Generated.UPSTREAM_ID] | None = GENERATED,
    profile: str = "default",
    video_id: str | None = None,
    model: str = "sora-2",
    size: str = "720x1280",
    seconds: str = "4",
    prompt: str = "a test video",
    progress: int | None = None,
    **columns: Any,
) -> Video:
    """A video row owned by `caller` (a new caller when None), as the API leaves it after a create.

    `progress` defaults to 100 for a completed video, else 0. Any other column of `Video` may be given by name
    (`created_at=`, `deleted_at=`, `expires_at=`, `callback_url=`, `caller_metadata=`, `error_code=`,
    `submitted_at=`, `upstream_model=` ...). The returned object is loaded (server defaults included) and
    detached from any transaction the factory opened.
    """
    video_id = video_id or f"video_{uuid.uuid4().hex}"
    status = VideoStatus(status)
    async with _session(target) as session:
        if caller is None:
            caller = await make_caller(session)
        video = Video(
            id=video_id,
            caller_id=caller if isinstance(caller, uuid.UUID) else caller.id,
            upstream_id=f"up_{video_id}" if upstream_id is GENERATED else upstream_id,
            upstream_profile=profile,
            model=model,
            size=size,
            seconds=seconds,
            prompt=prompt,
            status=status,
            progress=(100 if status is VideoStatus.COMPLETED else 0) if progress is None else progress,
            **columns,
        )
        session.add(video)
        await session.flush()
        await session.refresh(video)
    return video
