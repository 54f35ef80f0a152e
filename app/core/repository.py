"""The base of every repository: a frozen dataclass over the caller's session, so its writes join the caller's
transaction.

Repositories are the shared data layer (docs/decisions/008-repositories-are-the-shared-layer.md): each table's
model has one owning repository module, and any domain's service that needs those rows imports that repository.
A repository imports only `app.core`, `app.models`, SQLAlchemy and other repositories
(tests/unit/test_import_rules.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Self, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

T = TypeVar("T")


@dataclass(frozen=True)
class Repository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> Self:
        return cls(session)

    async def add(self, instance: T) -> T:
        """Add a new row and flush, so its database defaults (ids, sequences) are known; returns it."""
        self.session.add(instance)
        await self.session.flush()
        return instance
