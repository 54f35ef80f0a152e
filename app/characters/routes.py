"""`/v1/videos/characters`: parse, call the character service, answer in the contract's shape."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request

from app.characters.schemas import CharacterObject
from app.deps import CharacterServiceDep, CurrentCaller, SessionDep, SettingsDep
from app.idempotency.paid import paid_upstream_call
from app.videos import inputs

router = APIRouter(prefix="/v1/videos/characters", tags=["characters"])

CharacterId = Annotated[str, Path(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="A character's id (`char_...`)")]


async def character_request(request: Request, settings: SettingsDep) -> inputs.CharacterRequest:
    return await inputs.parse_character(request, max_video_bytes=settings.api.max_video_bytes)


CHARACTER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["name", "video"],
                    "properties": {
                        "name": {"type": "string", "minLength": 1, "maxLength": 80},
                        "video": {"type": "string", "format": "binary", "description": "An MP4 clip."},
                        "model": {
                            "type": "string",
                            "description": "Gateway extension: whose profile makes it (default `sora-2`'s).",
                        },
                    },
                }
            }
        },
    }
}


@router.post(
    "", response_model=CharacterObject, summary="Make a character from an uploaded video", openapi_extra=CHARACTER_BODY
)
@paid_upstream_call
async def create_character(
    caller: CurrentCaller,
    session: SessionDep,
    service: CharacterServiceDep,
    request: Annotated[inputs.CharacterRequest, Depends(character_request)],
) -> CharacterObject:
    return CharacterObject.from_row(await service.create(session, caller=caller, request=request))


@router.get("/{character_id}", response_model=CharacterObject, summary="Retrieve a character")
async def get_character(
    character_id: CharacterId, caller: CurrentCaller, session: SessionDep, service: CharacterServiceDep
) -> CharacterObject:
    return CharacterObject.from_row(await service.get(session, caller=caller, character_id=character_id))
