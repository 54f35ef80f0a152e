"""Making and reading a caller's characters.

A character is made on the profile of the model the request names (the default model's unless given), if
that provider makes characters (OpenAI's contract does; the live providers do not: 400
`unsupported_by_provider` before any call). The upstream call is treated as paid (never retried; a repeat is
made safe by `Idempotency-Key`). Upstream's id is kept, never shown: callers get our own `char_` id, and
another caller's id answers the same 404 as an unknown one.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.characters.repository import CharacterRepository
from app.core.errors import ResourceNotFound
from app.models import Caller, Character
from app.upstream.capabilities import check_characters
from app.upstream.router import UpstreamRouter
from app.upstream.schemas import CharacterCommand
from app.videos.inputs import CharacterRequest


def new_character_id() -> str:
    return "char_" + secrets.token_hex(16)


class CharacterService:
    def __init__(self, *, upstreams: UpstreamRouter) -> None:
        self._upstreams = upstreams

    async def create(self, session: AsyncSession, *, caller: Caller, request: CharacterRequest) -> Character:
        self._upstreams.check_model(request.model)
        profile = self._upstreams.profile_for_model(request.model)
        adapter = self._upstreams.adapter(profile)
        check_characters(request.model, adapter.capabilities(request.model))
        made = await adapter.create_character(CharacterCommand(name=request.name, video=request.video))
        character = Character(
            id=new_character_id(),
            caller_id=caller.id,
            # Upstream's spelling of the name if it gave one (it may normalise); ours is what was asked.
            name=(made.name or request.name)[:80],
            upstream_profile=profile,
            upstream_id=made.id,
            created_at=datetime.fromtimestamp(made.created_at, UTC),
        )
        await CharacterRepository.from_session(session).add(character)
        await session.commit()
        return character

    async def get(self, session: AsyncSession, *, caller: Caller, character_id: str) -> Character:
        character = await CharacterRepository.from_session(session).get_owned(character_id, caller_id=caller.id)
        if character is None:
            raise ResourceNotFound(
                f"No character found with id '{character_id}'.", param="character_id", code="not_found"
            )
        return character
