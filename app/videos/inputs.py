"""Parsing and validating create, remix, edit, extension and character requests, multipart or JSON.

Every rejection is a `GatewayError` in OpenAI's shape: 400 for bad values and unknown fields, 413 for an
oversize image, 415 for a body or image type we do not take, 422 for an image that claims a type it is not.
JSON bodies are read by `app.core.json_body` (no duplicate keys, bounded nesting); multipart text parts must
be valid in the body's charset (UTF-8 unless declared); images are judged from their header before any pixel
is decoded (`MAX_IMAGE_PIXELS`). An https `image_url` is only taken apart here: the video service fetches it
through the destination guard (`app.upstream.image_url`).

An edit's or extension's `video` is one of: a file part (an uploaded MP4, checked by `app.videos.uploads`),
the multipart text field `video[id]` (what the stock SDK sends for `extra_body={"video": {"id": ...}}`), or
the JSON object `{"video": {"id": ...}}`. A character is multipart only: `name` and a `video` file part.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Mapping
from contextlib import aclosing
from dataclasses import dataclass
from typing import Any

from fastapi import Request
from PIL import Image, UnidentifiedImageError
from starlette.datastructures import FormData, UploadFile
from starlette.formparsers import MultiPartException, MultiPartParser

from app.core import json_body
from app.core.errors import InvalidRequest, PayloadTooLarge, UnprocessableInput, UnsupportedMediaType
from app.models import VideoOrigin
from app.upstream.schemas import CreateVideoCommand, ImageInput, VideoUpload
from app.videos import uploads
from app.videos.schemas import (
    DEFAULT_MODEL,
    DEFAULT_SECONDS,
    DEFAULT_SIZE,
    MAX_PROMPT_CHARS,
)

CREATE_FIELDS = frozenset({"prompt", "model", "seconds", "size", "input_reference", "callback_url", "metadata"})
# Gateway-only fields of a create: never sent upstream.
MAX_METADATA_KEYS = 16
MAX_METADATA_KEY_CHARS = 64
MAX_METADATA_VALUE_CHARS = 512
MAX_CALLBACK_URL_CHARS = 2048
REMIX_FIELDS = frozenset({"prompt"})
EDIT_FIELDS = frozenset({"prompt", "video", "model", "callback_url", "metadata"})
EXTENSION_FIELDS = EDIT_FIELDS | {"seconds"}
CHARACTER_FIELDS = frozenset({"name", "video", "model"})
MAX_CHARACTER_NAME_CHARS = 80
# Our video ids (`video_` and hex); anything else in `video.id` cannot name one (and a NUL would reach Postgres).
VIDEO_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
IMAGE_FORMATS = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
MAX_IMAGE_URL_CHARS = 20_971_520
MAX_MODEL_CHARS = 100
MAX_CHOICE_CHARS = 20
READ_CHUNK = 64 * 1024
# The largest image we take, in pixels, decided from the header before anything is decoded: far above any
# size a model renders (1792x1024, 1920x1080), and below Pillow's own default (89.5 Mpx), so that Pillow's
# check (a warning past its limit, DecompressionBombError past twice it) never is the one that decides.
MAX_IMAGE_PIXELS = 8192 * 8192
MULTIPART_MAX_FILES = 1
MULTIPART_MAX_FIELDS = 16


@dataclass(frozen=True)
class RemixCommand:
    prompt: str


@dataclass(frozen=True)
class VideoReference:
    """An edit's or extension's source: one of the caller's videos (by our id), or an uploaded MP4."""

    video_id: str | None = None
    upload: VideoUpload | None = None


@dataclass(frozen=True)
class DerivationRequest:
    """A parsed edit or extension: what to render from which source, and what only the gateway keeps."""

    origin: VideoOrigin  # EDIT or EXTENSION
    prompt: str
    source: VideoReference
    # An extension's new segment; None for an edit.
    seconds: str | None = None
    # Only with an uploaded source (a referenced video renders with its own model); None: the default model.
    model: str | None = None
    callback_url: str | None = None
    metadata: dict[str, str] | None = None


@dataclass(frozen=True)
class CharacterRequest:
    name: str
    video: VideoUpload
    # Gateway extension: whose profile makes it (the default model's, unless named).
    model: str


@dataclass(frozen=True)
class CreateRequest:
    """A parsed create: what goes upstream, and what only the gateway keeps."""

    command: CreateVideoCommand
    callback_url: str | None = None
    metadata: dict[str, str] | None = None


def check_callback_url(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise _invalid_type("callback_url", "a non-empty string")
    if len(value) > MAX_CALLBACK_URL_CHARS:
        raise InvalidRequest("'callback_url' is too long.", param="callback_url", code="invalid_value")
    return value


def check_metadata(value: object) -> dict[str, str] | None:
    """At most 16 string keys (≤ 64 chars) with string values (≤ 512 chars), as OpenAI's metadata."""
    if value is None:
        return None
    if not isinstance(value, dict):
        raise _invalid_type("metadata", "an object of string values")
    if len(value) > MAX_METADATA_KEYS:
        raise InvalidRequest(
            f"'metadata' has more than {MAX_METADATA_KEYS} keys.", param="metadata", code="invalid_value"
        )
    for key, item in value.items():
        # Printable keys only: a NUL (or any control character) cannot be stored in Postgres' jsonb, and
        # the key is echoed in `param` and messages.
        if not isinstance(key, str) or not 1 <= len(key) <= MAX_METADATA_KEY_CHARS or not key.isprintable():
            raise InvalidRequest("Invalid 'metadata' key.", param="metadata", code="invalid_value")
        if not isinstance(item, str) or len(item) > MAX_METADATA_VALUE_CHARS:
            raise InvalidRequest(
                f"'metadata.{key}' must be a string of at most {MAX_METADATA_VALUE_CHARS} characters.",
                param=f"metadata.{key}",
                code="invalid_value",
            )
        if "\x00" in item:
            raise InvalidRequest(
                f"'metadata.{key}' must not contain NUL characters.", param=f"metadata.{key}", code="invalid_value"
            )
    return dict(value)


def _unknown_parameter(name: str) -> InvalidRequest:
    return InvalidRequest(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def _missing(name: str) -> InvalidRequest:
    return InvalidRequest(f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")


def _invalid_type(name: str, expected: str) -> InvalidRequest:
    return InvalidRequest(f"Invalid type for '{name}': expected {expected}.", param=name, code="invalid_type")


def check_prompt(value: object) -> str:
    if value is None:
        raise _missing("prompt")
    if not isinstance(value, str):
        raise _invalid_type("prompt", "a string")
    if "\x00" in value:
        # Postgres text cannot hold NUL, and no prompt needs one.
        raise InvalidRequest("'prompt' must not contain NUL characters.", param="prompt", code="invalid_value")
    if not 1 <= len(value) <= MAX_PROMPT_CHARS:
        raise InvalidRequest(
            f"Invalid 'prompt': length must be between 1 and {MAX_PROMPT_CHARS} characters, got {len(value)}.",
            param="prompt",
            code="invalid_value",
        )
    return value


def _check_text(name: str, value: object, default: str) -> str:
    """A short printable string (the model's adapter decides which values it takes)."""
    if value is None:
        return default
    if not isinstance(value, str):
        raise _invalid_type(name, "a string")
    if not 1 <= len(value) <= MAX_CHOICE_CHARS or not value.isprintable():
        raise InvalidRequest(f"Invalid value for '{name}'.", param=name, code="invalid_value")
    return value


def _check_model(value: object) -> str:
    if value is None:
        return DEFAULT_MODEL
    if not isinstance(value, str):
        raise _invalid_type("model", "a string")
    if not 1 <= len(value) <= MAX_MODEL_CHARS or not value.isprintable():
        raise InvalidRequest("Invalid value for 'model'.", param="model", code="invalid_value")
    return value


def check_image(data: bytes, *, max_bytes: int) -> ImageInput:
    """The image if it is a JPEG, PNG or WebP, decided from the bytes, not the label. Whether its dimensions
    must equal the requested size depends on the model (`app.upstream.capabilities`)."""
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"'input_reference' is larger than {max_bytes} bytes.", param="input_reference")
    too_many_pixels = PayloadTooLarge(
        f"'input_reference' has more than {MAX_IMAGE_PIXELS} pixels.", param="input_reference", code="image_too_large"
    )
    try:
        # Pillow only warns past its limit; here that is a refusal like its error past twice the limit.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                image_format = image.format or ""
                width, height = image.size
                if width * height > MAX_IMAGE_PIXELS:
                    raise too_many_pixels
                if image_format in IMAGE_FORMATS:
                    image.verify()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise too_many_pixels from None
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(
            "Unsupported image type for 'input_reference'. Supported types: image/jpeg, image/png, image/webp.",
            param="input_reference",
            code="unsupported_image_type",
        ) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise UnprocessableInput(
            "'input_reference' could not be decoded as an image.",
            param="input_reference",
            code="invalid_image",
        ) from exc
    if image_format not in IMAGE_FORMATS:
        raise UnsupportedMediaType(
            f"Unsupported image type {image_format or 'unknown'} for 'input_reference'. "
            "Supported types: image/jpeg, image/png, image/webp.",
            param="input_reference",
            code="unsupported_image_type",
        )
    content_type = IMAGE_FORMATS[image_format]
    extension = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp"}[content_type]
    return ImageInput(
        data=data, content_type=content_type, filename=f"input_reference.{extension}", width=width, height=height
    )


def _decode_data_url(url: str) -> bytes:
    header, _, payload = url.partition(",")
    if not header.startswith("data:") or not header.endswith(";base64") or not payload:
        raise InvalidRequest(
            "'input_reference.image_url' must be an https URL or a base64 data URL.",
            param="input_reference.image_url",
            code="invalid_image_url",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(
            "'input_reference.image_url' is not valid base64.",
            param="input_reference.image_url",
            code="invalid_image_url",
        ) from exc


def _command_from_mapping(
    fields: Mapping[str, Any], *, image: ImageInput | None, image_url: str | None
) -> CreateVideoCommand:
    return CreateVideoCommand(
        prompt=check_prompt(fields.get("prompt")),
        model=_check_model(fields.get("model")),
        # Which values are valid depends on the model: its adapter checks them (app.upstream.capabilities).
        seconds=_check_text("seconds", fields.get("seconds"), DEFAULT_SECONDS),
        size=_check_text("size", fields.get("size"), DEFAULT_SIZE),
        image=image,
        image_url=image_url,
    )


async def parse_create(request: Request, *, max_image_bytes: int) -> CreateRequest:
    kind = _media_type(request)
    if kind == "multipart/form-data":
        return await _parse_create_multipart(request, max_image_bytes=max_image_bytes)
    if kind == "application/json":
        fields = await _json_object(request)
        return CreateRequest(
            command=_parse_create_json(fields, max_image_bytes=max_image_bytes),
            callback_url=check_callback_url(fields.get("callback_url")),
            metadata=check_metadata(fields.get("metadata")),
        )
    raise _unsupported_body(kind)


async def parse_remix(request: Request) -> RemixCommand:
    kind = _media_type(request)
    if kind == "application/json":
        fields: Mapping[str, Any] = await _json_object(request)
    elif kind == "multipart/form-data":
        form = await _form(request)
        await form.close()  # no file is read from a remix form; close spooled parts now
        fields = {name: value for name, value in form.multi_items()}
        if isinstance(fields.get("prompt"), UploadFile):
            raise _invalid_type("prompt", "a string")
    else:
        raise _unsupported_body(kind)
    for name in fields:
        if name not in REMIX_FIELDS:
            raise _unknown_parameter(name)
    return RemixCommand(prompt=check_prompt(fields.get("prompt")))


async def parse_derivation(request: Request, *, origin: VideoOrigin, max_video_bytes: int) -> DerivationRequest:
    """An edit (`origin` EDIT) or extension (EXTENSION), multipart or JSON."""
    allowed = EXTENSION_FIELDS if origin is VideoOrigin.EXTENSION else EDIT_FIELDS
    kind = _media_type(request)
    if kind == "multipart/form-data":
        form = await _form(request)
        try:
            fields, metadata = _form_fields(form, allowed=allowed, file_fields=("video",))
            source = await _reference_from_form(fields, max_video_bytes=max_video_bytes)
        finally:
            await form.close()
        metadata_value: object = metadata or None
    elif kind == "application/json":
        fields = await _json_object(request)
        for name in fields:
            if name not in allowed:
                raise _unknown_parameter(name)
        source = _reference_from_json(fields.get("video"))
        metadata_value = fields.get("metadata")
    else:
        raise _unsupported_body(kind)
    model = fields.get("model")
    if model is not None and source.upload is None:
        raise InvalidRequest(
            "'model' is taken only with an uploaded video; a referenced video is edited or extended with the "
            "model that rendered it.",
            param="model",
            code="invalid_value",
        )
    seconds = None
    if origin is VideoOrigin.EXTENSION:
        if fields.get("seconds") is None:
            raise _missing("seconds")
        # Which lengths an extension may add depends on the model: its capabilities decide (a 400 listing them).
        seconds = _check_text("seconds", fields.get("seconds"), DEFAULT_SECONDS)
    return DerivationRequest(
        origin=origin,
        prompt=check_prompt(fields.get("prompt")),
        source=source,
        seconds=seconds,
        model=_check_model(model) if model is not None else None,
        callback_url=check_callback_url(fields.get("callback_url")),
        metadata=check_metadata(metadata_value),
    )


async def parse_character(request: Request, *, max_video_bytes: int) -> CharacterRequest:
    kind = _media_type(request)
    if kind != "multipart/form-data":
        raise UnsupportedMediaType(
            f"Unsupported Content-Type '{kind or 'none'}'; a character is made from an uploaded video: send "
            "multipart/form-data with 'name' and a 'video' file part."
        )
    form = await _form(request)
    try:
        fields, metadata = _form_fields(form, allowed=CHARACTER_FIELDS, file_fields=("video",))
        if metadata:
            raise _unknown_parameter("metadata")
        name = fields.get("name")
        if name is None:
            raise _missing("name")
        if not isinstance(name, str):
            raise _invalid_type("name", "a string")
        if not 1 <= len(name) <= MAX_CHARACTER_NAME_CHARS or not name.isprintable():
            raise InvalidRequest(
                f"Invalid 'name': 1 to {MAX_CHARACTER_NAME_CHARS} printable characters.",
                param="name",
                code="invalid_value",
            )
        video = fields.get("video")
        if video is None:
            raise _missing("video")
        if not isinstance(video, UploadFile):
            raise _invalid_type("video", "a file part (an MP4)")
        upload = await _read_video(video, max_video_bytes=max_video_bytes)
    finally:
        await form.close()
    return CharacterRequest(name=name, video=upload, model=_check_model(fields.get("model")))


def _form_fields(
    form: FormData, *, allowed: frozenset[str], file_fields: tuple[str, ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A form's fields by name (each once; files only where allowed) and its `metadata[key]` parts."""
    fields: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    value: Any
    for part_name, part in form.multi_items():
        # The SDK's extra_body={"metadata": {...}} arrives as `metadata[key]` parts, {"video": {"id": ...}} as
        # `video[id]`.
        name, value = part_name, part
        if name.startswith("metadata[") and name.endswith("]") and not isinstance(value, UploadFile):
            metadata[name[len("metadata[") : -1]] = value
            continue
        if name == "video[id]" and "video" in allowed and not isinstance(part, UploadFile):
            name, value = "video", {"id": part}
        if name not in allowed or name == "metadata":
            raise _unknown_parameter(name)
        if name in fields:
            raise InvalidRequest(f"Parameter '{name}' was given more than once.", param=name, code="invalid_value")
        if isinstance(value, UploadFile) and name not in file_fields:
            raise _invalid_type(name, "a string, not a file")
        fields[name] = value
    return fields, metadata


async def _reference_from_form(fields: Mapping[str, Any], *, max_video_bytes: int) -> VideoReference:
    video = fields.get("video")
    if isinstance(video, UploadFile):
        return VideoReference(upload=await _read_video(video, max_video_bytes=max_video_bytes))
    return _reference_from_json(video)


def _reference_from_json(video: object) -> VideoReference:
    if video is None:
        raise _missing("video")
    if not isinstance(video, dict):
        raise _invalid_type("video", "an object with 'id' (JSON), a 'video[id]' field or a file part (multipart)")
    for name in video:
        if name != "id":
            raise _unknown_parameter(f"video.{name}")
    video_id = video.get("id")
    if video_id is None:
        raise _missing("video.id")
    if not isinstance(video_id, str):
        raise _invalid_type("video.id", "a string")
    if not VIDEO_ID.fullmatch(video_id):
        raise InvalidRequest("Invalid value for 'video.id'.", param="video.id", code="invalid_value")
    return VideoReference(video_id=video_id)


async def _read_video(upload: UploadFile, *, max_video_bytes: int) -> VideoUpload:
    buffer = bytearray()
    while chunk := await upload.read(READ_CHUNK):
        buffer.extend(chunk)
        if len(buffer) > max_video_bytes:
            raise uploads.too_large(max_video_bytes, param="video")
    return await uploads.check_video(bytes(buffer), filename=upload.filename, max_bytes=max_video_bytes)


async def _parse_create_multipart(request: Request, *, max_image_bytes: int) -> CreateRequest:
    form = await _form(request)
    try:
        return await _create_from_form(form, max_image_bytes=max_image_bytes)
    finally:
        await form.close()  # spooled upload parts are temporary files


async def _create_from_form(form: FormData, *, max_image_bytes: int) -> CreateRequest:
    fields: dict[str, Any] = {}
    metadata: dict[str, Any] = {}
    for name, value in form.multi_items():
        # The SDK's extra_body={"metadata": {...}} arrives as `metadata[key]` parts.
        if name.startswith("metadata[") and name.endswith("]") and not isinstance(value, UploadFile):
            metadata[name[len("metadata[") : -1]] = value
            continue
        if name not in CREATE_FIELDS or name == "metadata":
            raise _unknown_parameter(name)
        if name in fields:
            raise InvalidRequest(f"Parameter '{name}' was given more than once.", param=name, code="invalid_value")
        fields[name] = value
    for name, value in fields.items():
        if name != "input_reference" and isinstance(value, UploadFile):
            raise _invalid_type(name, "a string, not a file")
    image = None
    reference = fields.get("input_reference")
    if reference is not None:
        if not isinstance(reference, UploadFile):
            raise _invalid_type("input_reference", "a file part (multipart) or an object (JSON)")
        data = await _read_bounded(reference, max_image_bytes)
        image = check_image(data, max_bytes=max_image_bytes)
    return CreateRequest(
        command=_command_from_mapping(fields, image=image, image_url=None),
        callback_url=check_callback_url(fields.get("callback_url")),
        metadata=check_metadata(metadata) if metadata else None,
    )


def _parse_create_json(fields: dict[str, Any], *, max_image_bytes: int) -> CreateVideoCommand:
    for name in fields:
        if name not in CREATE_FIELDS:
            raise _unknown_parameter(name)
    image: ImageInput | None = None
    image_url: str | None = None
    reference = fields.get("input_reference")
    if reference is not None:
        if not isinstance(reference, dict):
            raise _invalid_type("input_reference", "an object with 'image_url'")
        for name in reference:
            if name not in ("image_url", "file_id"):
                raise _unknown_parameter(f"input_reference.{name}")
        if "file_id" in reference:
            raise InvalidRequest(
                "'input_reference.file_id' is not supported by this gateway; send 'image_url' or a file part.",
                param="input_reference.file_id",
                code="unsupported_parameter",
            )
        url = reference.get("image_url")
        if not isinstance(url, str) or not url:
            raise _invalid_type("input_reference.image_url", "a string")
        if len(url) > MAX_IMAGE_URL_CHARS:
            raise PayloadTooLarge("'input_reference.image_url' is too long.", param="input_reference.image_url")
        if url.startswith("data:"):
            image = check_image(_decode_data_url(url), max_bytes=max_image_bytes)
        elif url.startswith("https://"):
            image_url = url
        else:
            raise InvalidRequest(
                "'input_reference.image_url' must be an https URL or a base64 data URL.",
                param="input_reference.image_url",
                code="invalid_image_url",
            )
    return _command_from_mapping(fields, image=image, image_url=image_url)


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def _unsupported_body(kind: str) -> UnsupportedMediaType:
    return UnsupportedMediaType(
        f"Unsupported Content-Type '{kind or 'none'}'; send multipart/form-data or application/json."
    )


class _StrictTextParts(MultiPartParser):
    """Starlette's multipart parser, except that a text part that does not decode in the body's charset
    (UTF-8 unless the Content-Type names another) is refused: Starlette would fall back to Latin-1 and hand
    on other characters than were sent. (`_current_part` and `_charset` are the parser's own state.)"""

    def on_part_end(self) -> None:
        part = self._current_part
        if part.file is None:
            try:
                part.data.decode(self._charset)
            except UnicodeDecodeError:
                name = part.field_name if part.field_name.isprintable() else None
                raise InvalidRequest(
                    f"Parameter '{name}' is not valid {self._charset} text." if name else "A part is not valid text.",
                    param=name,
                    code="invalid_encoding",
                ) from None
        super().on_part_end()


async def _form(request: Request) -> FormData:
    try:
        async with aclosing(request.stream()) as stream:
            parser = _StrictTextParts(
                request.headers, stream, max_files=MULTIPART_MAX_FILES, max_fields=MULTIPART_MAX_FIELDS
            )
            return await parser.parse()
    except MultiPartException as exc:
        raise InvalidRequest(f"Malformed multipart body: {exc.message}", code="invalid_multipart") from exc
    except (AssertionError, KeyError, ValueError) as exc:
        # Starlette's parser asserts on a missing boundary rather than raising its own error.
        raise InvalidRequest("Malformed multipart body.", code="invalid_multipart") from exc


async def _json_object(request: Request) -> dict[str, Any]:
    return json_body.parse_object(await request.body())


async def _read_bounded(upload: UploadFile, limit: int) -> bytes:
    buffer = bytearray()
    while chunk := await upload.read(READ_CHUNK):
        buffer.extend(chunk)
        if len(buffer) > limit:
            raise PayloadTooLarge(f"'input_reference' is larger than {limit} bytes.", param="input_reference")
    return bytes(buffer)
