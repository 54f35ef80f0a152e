"""Queries on characters. Every read of a caller's character goes through an ownership filter here."""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Character


@dataclass(frozen=True)
class CharacterRepository:
    session: AsyncSession

    @classmethod
    def from_session(cls, session: AsyncSession) -> CharacterRepository:
        return cls(session)

    async def add(self, character: Character) -> Character:
        self.session.add(character)
        await self.session.flush()
        return character

    async def get_owned(self, character_id: str, *, caller_id: uuid.UUID) -> Character | None:
        """The caller's character, or None for unknown and other callers' ids alike."""
        statement = select(Character).where(Character.id == character_id, Character.caller_id == caller_id)
        return (await self.session.execute(statement)).scalar_one_or_none()
