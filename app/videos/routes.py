"""`/v1/videos`: parse, call the video service, answer in the contract's shape."""

# No `from __future__ import annotations` here: the edit and extension handler names a dependency built inside
# `derivation_handler`, and FastAPI can only resolve such annotations when they are real objects, not strings.
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request
from fastapi.responses import StreamingResponse

from app.core.config import Settings
from app.deps import CurrentCaller, DatabaseDep, SessionDep, SettingsDep, VideoServiceDep
from app.idempotency.paid import paid_upstream_call
from app.models import Variant, VideoOrigin
from app.videos import inputs, ranges
from app.videos.schemas import ArchivedVideoObject, AssetLinkList, VideoDeleted, VideoList, VideoObject

router = APIRouter(prefix="/v1/videos", tags=["videos"])

# Our ids are `video_` and 32 hex digits. A value that could not be one (a NUL or another control character,
# punctuation, 65 characters or more) is a 400 naming the parameter, before any lookup: Postgres refuses a NUL
# in text with an error, which would be a 500.
VIDEO_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
VideoId = Annotated[str, Path(pattern=VIDEO_ID_PATTERN, description="A video's id (`video_...`)")]


async def create_request(request: Request, settings: SettingsDep) -> inputs.CreateRequest:
    return await inputs.parse_create(request, max_image_bytes=settings.api.max_image_bytes)


async def remix_command(request: Request) -> inputs.RemixCommand:
    return await inputs.parse_remix(request)


def derivation_request(origin: VideoOrigin) -> Callable[[Request, Settings], Awaitable[inputs.DerivationRequest]]:
    """The body parser of an edit or an extension: the two differ only in the origin the parser is given."""

    async def parse(request: Request, settings: SettingsDep) -> inputs.DerivationRequest:
        return await inputs.parse_derivation(request, origin=origin, max_video_bytes=settings.api.max_video_bytes)

    return parse


CREATE_FIELDS_SCHEMA = {
    "type": "object",
    "required": ["prompt"],
    "properties": {
        "prompt": {"type": "string", "minLength": 1, "maxLength": 32000},
        "model": {"type": "string", "default": "sora-2"},
        "seconds": {"type": "string", "enum": ["4", "8", "12"], "default": "4"},
        "size": {
            "type": "string",
            "enum": ["720x1280", "1280x720", "1024x1792", "1792x1024"],
            "default": "720x1280",
        },
        "callback_url": {
            "type": "string",
            "description": "Gateway extension: where to POST signed video.archived / video.failed events.",
        },
    },
}
CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    **CREATE_FIELDS_SCHEMA,
                    "properties": {
                        **CREATE_FIELDS_SCHEMA["properties"],  # type: ignore[dict-item]
                        "input_reference": {"type": "string", "format": "binary"},
                    },
                }
            },
            "application/json": {
                "schema": {
                    **CREATE_FIELDS_SCHEMA,
                    "properties": {
                        **CREATE_FIELDS_SCHEMA["properties"],  # type: ignore[dict-item]
                        "input_reference": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {"image_url": {"type": "string"}},
                        },
                        "metadata": {
                            "type": "object",
                            "maxProperties": 16,
                            "additionalProperties": {"type": "string", "maxLength": 512},
                            "description": "Gateway extension: a small string map echoed back on the video.",
                        },
                    },
                }
            },
        },
    }
}
REMIX_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {"prompt": {"type": "string", "minLength": 1, "maxLength": 32000}},
                }
            }
        },
    }
}

# An edit's or extension's source: one of the caller's completed videos, or an uploaded MP4.
GATEWAY_FIELDS_SCHEMA = {
    "callback_url": CREATE_FIELDS_SCHEMA["properties"]["callback_url"],  # type: ignore[index]
    "model": {
        "type": "string",
        "description": "Only with an uploaded video: the model to render with (default `sora-2`).",
    },
}
EXTENSION_SECONDS = {
    "type": "string",
    "description": "The new segment's length; the result's `seconds` is the stitched total. OpenAI-contract "
    "upstreams take 4, 8, 12, 16 or 20; Veo 3.1 takes 7.",
}


def derivation_body(*, extension: bool) -> dict[str, object]:
    required = ["prompt", "seconds", "video"] if extension else ["prompt", "video"]
    extra = {"seconds": EXTENSION_SECONDS} if extension else {}
    prompt = CREATE_FIELDS_SCHEMA["properties"]["prompt"]  # type: ignore[index]
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": [name for name in required if name != "video"],
                        "properties": {
                            "prompt": prompt,
                            **extra,
                            "video": {"type": "string", "format": "binary", "description": "An MP4 to start from."},
                            "video[id]": {"type": "string", "description": "Or: one of your completed videos."},
                            **GATEWAY_FIELDS_SCHEMA,
                        },
                    }
                },
                "application/json": {
                    "schema": {
                        "type": "object",
                        "required": required,
                        "properties": {
                            "prompt": prompt,
                            **extra,
                            "video": {
                                "type": "object",
                                "required": ["id"],
                                "additionalProperties": False,
                                "properties": {"id": {"type": "string", "pattern": VIDEO_ID_PATTERN}},
                            },
                            **GATEWAY_FIELDS_SCHEMA,
                            "metadata": CREATE_BODY["requestBody"]["content"]["application/json"]["schema"][  # type: ignore[index]
                                "properties"
                            ]["metadata"],
                        },
                    }
                },
            },
        }
    }


@router.post("", response_model=VideoObject, summary="Create a video (multipart or JSON)", openapi_extra=CREATE_BODY)
@paid_upstream_call
async def create_video(
    caller: CurrentCaller,
    session: SessionDep,
    service: VideoServiceDep,
    create: Annotated[inputs.CreateRequest, Depends(create_request)],
) -> VideoObject:
    return VideoObject.from_row(await service.create(session, caller=caller, request=create))


@router.get("", response_model=VideoList, summary="List the caller's videos")
async def list_videos(
    caller: CurrentCaller,
    database: DatabaseDep,
    service: VideoServiceDep,
    settings: SettingsDep,
    after: Annotated[str | None, Query(pattern=VIDEO_ID_PATTERN)] = None,
    limit: Annotated[int | None, Query(ge=0, le=100)] = None,
    order: Annotated[Literal["asc", "desc"], Query()] = "desc",
) -> VideoList:
    page_size = settings.api.list_default_limit if limit is None else limit
    rows, has_more = await service.list_page(database, caller=caller, after=after, limit=page_size, order=order)
    data = [VideoObject.from_row(row) for row in rows]
    return VideoList(
        data=data,
        first_id=data[0].id if data else None,
        last_id=data[-1].id if data else None,
        has_more=has_more,
    )


@router.get("/{video_id}", response_model=ArchivedVideoObject, summary="Retrieve a video, with its archive state")
async def retrieve_video(
    video_id: VideoId, caller: CurrentCaller, database: DatabaseDep, service: VideoServiceDep
) -> ArchivedVideoObject:
    video, assets = await service.retrieve(database, caller=caller, video_id=video_id)
    return ArchivedVideoObject.from_rows(video, assets)


@router.delete("/{video_id}", response_model=VideoDeleted, summary="Delete a video")
async def delete_video(
    video_id: VideoId, caller: CurrentCaller, session: SessionDep, service: VideoServiceDep
) -> VideoDeleted:
    video = await service.delete(session, caller=caller, video_id=video_id)
    return VideoDeleted(id=video.id)


CONTENT_TYPES: dict[str, Any] = {"video/mp4": {}, "image/webp": {}, "image/jpeg": {}}


@router.get(
    "/{video_id}/content",
    response_class=StreamingResponse,
    summary="Download a video's MP4, thumbnail (WebP) or spritesheet (JPEG), streamed",
    responses={
        200: {"content": CONTENT_TYPES},
        206: {"description": "One byte range of the archived copy (`Range: bytes=...`)", "content": CONTENT_TYPES},
        416: {"description": "The range starts past the end (`Content-Range: bytes */size`)"},
    },
)
async def download_content(
    video_id: VideoId,
    caller: CurrentCaller,
    session: SessionDep,
    service: VideoServiceDep,
    variant: Annotated[Variant, Query()] = Variant.VIDEO,
    range_header: Annotated[
        str | None,
        Header(alias="range", description="One byte range of the archived copy: `bytes=a-b`, `bytes=a-`, `bytes=-n`"),
    ] = None,
    if_range: Annotated[str | None, Header(alias="if-range", description="Any value: the whole copy is sent")] = None,
) -> StreamingResponse:
    byte_range = ranges.parse_range(range_header, if_range=if_range)
    content = await service.open_content(
        session, caller=caller, video_id=video_id, variant=variant, byte_range=byte_range
    )
    headers = {"accept-ranges": content.accept_ranges}
    if content.content_length:
        headers["content-length"] = content.content_length
    if content.content_range:
        headers["content-range"] = content.content_range
    return StreamingResponse(
        content.iterate(),
        status_code=206 if content.content_range else 200,
        media_type=content.content_type,
        headers=headers,
    )


@router.get(
    "/{video_id}/assets",
    response_model=AssetLinkList,
    summary="Presigned S3 URLs of the archived variants (gateway extension)",
)
async def list_asset_links(
    video_id: VideoId, caller: CurrentCaller, session: SessionDep, service: VideoServiceDep
) -> AssetLinkList:
    return AssetLinkList(data=await service.asset_links(session, caller=caller, video_id=video_id))


@router.post(
    "/{video_id}/remix", response_model=VideoObject, summary="Remix a completed video", openapi_extra=REMIX_BODY
)
@paid_upstream_call
async def remix_video(
    video_id: VideoId,
    caller: CurrentCaller,
    session: SessionDep,
    service: VideoServiceDep,
    command: Annotated[inputs.RemixCommand, Depends(remix_command)],
) -> VideoObject:
    return VideoObject.from_row(await service.remix(session, caller=caller, video_id=video_id, command=command))


def derivation_handler(origin: VideoOrigin) -> Callable[..., Awaitable[VideoObject]]:
    """The one handler of `POST /edits` and `POST /extensions`, with the body parser of `origin`."""

    @paid_upstream_call
    async def derive_video(
        caller: CurrentCaller,
        session: SessionDep,
        service: VideoServiceDep,
        request: Annotated[inputs.DerivationRequest, Depends(derivation_request(origin))],
    ) -> VideoObject:
        return VideoObject.from_row(await service.derive(session, caller=caller, request=request))

    return derive_video


# Named as their handlers were before they became one: the names make the OpenAPI operation ids.
router.add_api_route(
    "/edits",
    derivation_handler(VideoOrigin.EDIT),
    methods=["POST"],
    name="edit_video",
    response_model=VideoObject,
    summary="Edit a completed video, or an uploaded MP4, into a new video",
    openapi_extra=derivation_body(extension=False),
)
router.add_api_route(
    "/extensions",
    derivation_handler(VideoOrigin.EXTENSION),
    methods=["POST"],
    name="extend_video",
    response_model=VideoObject,
    summary="Extend a completed video, or an uploaded MP4, by a new segment",
    openapi_extra=derivation_body(extension=True),
)
