"""The character wire shape (OpenAI's contract: `{id, name, created_at}`)."""

from __future__ import annotations

from pydantic import BaseModel

from app.core.timestamps import unix_seconds
from app.models import Character


class CharacterObject(BaseModel):
    id: str
    name: str | None
    created_at: int

    @classmethod
    def from_row(cls, character: Character) -> CharacterObject:
        return cls(id=character.id, name=character.name, created_at=unix_seconds(character.created_at))
