"""Queries on callers and API keys. Validity (revoked, expired, disabled) is decided by the database's clock."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiKey, Caller, KeyRequestWindow


@dataclass(frozen=True)
class KeyRow:
    """A key as administrators see it: never the digest or the lookup."""

    key: ApiKey
    caller_name: str
    last_used_at: datetime | None


@dataclass(frozen=True)
class CallerRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> CallerRepository:
        return cls(session)

    async def get_key_by_lookup(self, lookup: str) -> tuple[ApiKey, Caller] | None:
        """The usable key with this lookup: not revoked, not expired, its caller not disabled."""
        statement = (
            select(ApiKey, Caller)
            .join(Caller, Caller.id == ApiKey.caller_id)
            .where(
                ApiKey.lookup == lookup,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
                Caller.disabled_at.is_(None),
            )
        )
        row = (await self.session.execute(statement)).first()
        return (row[0], row[1]) if row else None

    async def get_key_by_lookup_any_state(self, lookup: str) -> ApiKey | None:
        return (await self.session.execute(select(ApiKey).where(ApiKey.lookup == lookup))).scalar_one_or_none()

    async def get_caller_by_name(self, name: str) -> Caller | None:
        return (await self.session.execute(select(Caller).where(Caller.name == name))).scalar_one_or_none()

    async def get_caller(self, caller_id: uuid.UUID) -> Caller | None:
        return await self.session.get(Caller, caller_id)

    async def list_callers(self) -> Sequence[Caller]:
        return (await self.session.execute(select(Caller).order_by(Caller.created_at, Caller.name))).scalars().all()

    async def get_key(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def list_keys(self, *, caller_id: uuid.UUID | None = None) -> list[KeyRow]:
        statement = (
            select(ApiKey, Caller.name, KeyRequestWindow.last_request_at)
            .join(Caller, Caller.id == ApiKey.caller_id)
            .outerjoin(KeyRequestWindow, KeyRequestWindow.api_key_id == ApiKey.id)
            .order_by(Caller.name, ApiKey.created_at)
        )
        if caller_id is not None:
            statement = statement.where(ApiKey.caller_id == caller_id)
        rows = (await self.session.execute(statement)).all()
        return [KeyRow(key=row[0], caller_name=row[1], last_used_at=row[2]) for row in rows]

    async def revoke_key(self, key_id: uuid.UUID) -> ApiKey | None:
        """Revoke (idempotently: a revoked key keeps its first revocation time) and return the key."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        key = await self.session.get(ApiKey, key_id, populate_existing=True)
        return key

    async def add(self, instance: Caller | ApiKey) -> None:
        self.session.add(instance)
        await self.session.flush()

    async def refresh(self, instance: Caller | ApiKey) -> None:
        await self.session.flush()
        await self.session.refresh(instance)
