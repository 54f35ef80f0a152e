"""Queries on characters. Every read of a caller's character goes through an ownership filter here."""

from __future__ import annotations

import uuid

from sqlalchemy import select

from app.core.repository import Repository
from app.models import Character


class CharacterRepository(Repository):
    async def get_owned(self, character_id: str, *, caller_id: uuid.UUID) -> Character | None:
        """The caller's character, or None for unknown and other callers' ids alike."""
        statement = select(Character).where(Character.id == character_id, Character.caller_id == caller_id)
        return (await self.session.execute(statement)).scalar_one_or_none()
