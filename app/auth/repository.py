"""Queries on callers and API keys."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import ApiKey, Caller


@dataclass(frozen=True)
class CallerRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> CallerRepository:
        return cls(session)

    async def get_key_by_lookup(self, lookup: str) -> tuple[ApiKey, Caller] | None:
        statement = (
            select(ApiKey, Caller)
            .join(Caller, Caller.id == ApiKey.caller_id)
            .where(ApiKey.lookup == lookup, ApiKey.revoked_at.is_(None), Caller.disabled_at.is_(None))
        )
        row = (await self.session.execute(statement)).first()
        return (row[0], row[1]) if row else None

    async def get_caller_by_name(self, name: str) -> Caller | None:
        return (await self.session.execute(select(Caller).where(Caller.name == name))).scalar_one_or_none()

    async def add(self, instance: Caller | ApiKey) -> None:
        self.session.add(instance)
        await self.session.flush()
