"""Pure checks of create, remix, edit, extension and character requests against the contract (no I/O).

The routes gather the raw fields (from multipart text parts or a JSON object) and the reference image
bytes; this module decides whether they are acceptable and normalises them. Messages follow the wording the
real API uses, so a gateway that passes them through shows users familiar text. Uploaded videos are checked
by `app.simulator.derive.probe_mp4` (that one decodes).
"""

from __future__ import annotations

import base64
import binascii
import io
from collections.abc import Mapping
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from app.simulator.errors import SimulatorError, invalid

PROMPT_MAX_CHARS = 32000
DEFAULT_MODEL = "sora-2"
SECONDS_VALUES = ("4", "8", "12")
DEFAULT_SECONDS = "4"
SIZE_VALUES = ("720x1280", "1280x720", "1024x1792", "1792x1024")
DEFAULT_SIZE = "720x1280"
CREATE_FIELDS = frozenset({"prompt", "model", "seconds", "size", "input_reference"})
REMIX_FIELDS = frozenset({"prompt"})
# `video` is the file part or, in JSON, `{"id": ...}`; multipart spells the reference as the text part `video[id]`.
EDIT_FIELDS = frozenset({"prompt", "model", "video", "video[id]"})
EXTENSION_FIELDS = EDIT_FIELDS | {"seconds"}
# The length of the added segment; the extended video lasts the source's seconds plus these.
EXTENSION_SECONDS_VALUES = ("4", "8", "12", "16", "20")
CHARACTER_FIELDS = frozenset({"name", "video"})
CHARACTER_NAME_MAX_CHARS = 80
# Pillow's format names for the MIME types the Guide allows (image/jpeg, image/png, image/webp).
REFERENCE_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
# OpenAI caps image_url at 20,971,520 chars; the decoded image is at most that many bytes.
MAX_IMAGE_URL_CHARS = 20_971_520


@dataclass(frozen=True, slots=True)
class CreateParams:
    prompt: str
    model: str
    seconds: str
    size: str


@dataclass(frozen=True, slots=True)
class DeriveParams:
    """An edit or extension request: its prompt, its source and the seconds an extension adds."""

    prompt: str
    # The referenced video's id; None when the source is the uploaded file part.
    video_id: str | None
    # None when not given: an upload is then `DEFAULT_MODEL`; a referenced video always keeps its own model.
    model: str | None
    extension_seconds: int = 0


def size_dimensions(size: str) -> tuple[int, int]:
    """`"720x1280"` → `(720, 1280)` (width, height)."""
    width, height = size.split("x")
    return int(width), int(height)


def reject_unknown_fields(fields: Mapping[str, object], allowed: frozenset[str]) -> None:
    for name in fields:
        if name not in allowed:
            raise invalid(f"Unknown parameter: '{name}'.", param=name, code="unknown_parameter")


def check_prompt(value: object) -> str:
    if value is None:
        raise invalid("Missing required parameter: 'prompt'.", param="prompt", code="missing_required_parameter")
    if not isinstance(value, str):
        raise invalid("Invalid type for 'prompt': expected a string.", param="prompt", code="invalid_type")
    if len(value) < 1:
        raise invalid(
            "Invalid 'prompt': string too short. Expected a string with minimum length 1, "
            "but got a string with length 0 instead.",
            param="prompt",
            code="string_below_min_length",
        )
    if len(value) > PROMPT_MAX_CHARS:
        raise invalid(
            f"Invalid 'prompt': string too long. Expected a string with maximum length {PROMPT_MAX_CHARS}, "
            f"but got a string with length {len(value)} instead.",
            param="prompt",
            code="string_above_max_length",
        )
    return value


def _check_choice(name: str, value: object, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(f"'{choice}'" for choice in choices)
        raise invalid(f"Invalid value: '{value}'. Supported values are: {listed}.", param=name)
    return value


def _check_model(value: object) -> str | None:
    if value is None:
        return None
    # The model is an open string upstream (new snapshots appear without an SDK release).
    if not isinstance(value, str) or not value:
        raise invalid("Invalid 'model': expected a non-empty string.", param="model", code="invalid_type")
    return value


def check_create_fields(fields: Mapping[str, object]) -> CreateParams:
    """Validate the non-file fields of a create request; `input_reference` is checked separately."""
    reject_unknown_fields(fields, CREATE_FIELDS)
    prompt = check_prompt(fields.get("prompt"))
    model = _check_model(fields.get("model")) or DEFAULT_MODEL
    seconds = _check_choice("seconds", fields.get("seconds"), SECONDS_VALUES, DEFAULT_SECONDS)
    size = _check_choice("size", fields.get("size"), SIZE_VALUES, DEFAULT_SIZE)
    return CreateParams(prompt=prompt, model=model, seconds=seconds, size=size)


def check_remix_fields(fields: Mapping[str, object]) -> str:
    reject_unknown_fields(fields, REMIX_FIELDS)
    return check_prompt(fields.get("prompt"))


def check_edit_fields(fields: Mapping[str, object], *, has_file: bool) -> DeriveParams:
    """Validate an edit request; `has_file` says the `video` field came as a file part (probed separately)."""
    reject_unknown_fields(fields, EDIT_FIELDS)
    prompt = check_prompt(fields.get("prompt"))
    video_id = _check_video_source(fields, has_file=has_file)
    return DeriveParams(prompt=prompt, video_id=video_id, model=_check_model(fields.get("model")))


def check_extension_fields(fields: Mapping[str, object], *, has_file: bool) -> DeriveParams:
    """Validate an extension request: an edit's fields plus the required `seconds` of the added segment."""
    reject_unknown_fields(fields, EXTENSION_FIELDS)
    prompt = check_prompt(fields.get("prompt"))
    video_id = _check_video_source(fields, has_file=has_file)
    seconds = fields.get("seconds")
    if seconds is None:
        raise invalid("Missing required parameter: 'seconds'.", param="seconds", code="missing_required_parameter")
    seconds = _check_choice("seconds", seconds, EXTENSION_SECONDS_VALUES, "")
    return DeriveParams(
        prompt=prompt, video_id=video_id, model=_check_model(fields.get("model")), extension_seconds=int(seconds)
    )


def _check_video_source(fields: Mapping[str, object], *, has_file: bool) -> str | None:
    """The referenced video's id, or None for an uploaded file: exactly one of the file part, the multipart
    text part `video[id]` or the JSON object `"video": {"id": ...}`."""
    form_reference = fields.get("video[id]")
    if has_file:
        if form_reference is not None:
            raise invalid("Provide either a video file or 'video[id]', not both.", param="video")
        return None
    if form_reference is not None:
        if fields.get("video") is not None:
            raise invalid("Provide either 'video' or 'video[id]', not both.", param="video")
        return _check_video_id(form_reference, "video[id]")
    value = fields.get("video")
    if value is None:
        raise invalid("Missing required parameter: 'video'.", param="video", code="missing_required_parameter")
    if not isinstance(value, dict):
        raise invalid(
            "Invalid type for 'video': expected a video file or an object with 'id'.",
            param="video",
            code="invalid_type",
        )
    for key in value:
        if key != "id":
            raise invalid(f"Unknown parameter: 'video.{key}'.", param=f"video.{key}", code="unknown_parameter")
    if "id" not in value:
        raise invalid("Missing required parameter: 'video.id'.", param="video.id", code="missing_required_parameter")
    return _check_video_id(value["id"], "video.id")


def _check_video_id(value: object, param: str) -> str:
    if not isinstance(value, str) or not value:
        raise invalid(f"Invalid type for '{param}': expected a non-empty string.", param=param, code="invalid_type")
    return value


def check_character_fields(fields: Mapping[str, object], *, has_file: bool) -> str:
    """Validate a character request (multipart only: `name` and the `video` file part); returns the name."""
    reject_unknown_fields(fields, CHARACTER_FIELDS)
    name = fields.get("name")
    if name is None:
        raise invalid("Missing required parameter: 'name'.", param="name", code="missing_required_parameter")
    if not isinstance(name, str):
        raise invalid("Invalid type for 'name': expected a string.", param="name", code="invalid_type")
    if not 1 <= len(name) <= CHARACTER_NAME_MAX_CHARS:
        code = "string_below_min_length" if not name else "string_above_max_length"
        raise invalid(
            f"Invalid 'name': expected a string of 1 to {CHARACTER_NAME_MAX_CHARS} characters, "
            f"but got a string with length {len(name)} instead.",
            param="name",
            code=code,
        )
    if not has_file:
        if fields.get("video") is not None:
            raise invalid("Invalid 'video': expected a file part.", param="video", code="invalid_type")
        raise invalid("Missing required parameter: 'video'.", param="video", code="missing_required_parameter")
    return name


def check_reference_image(data: bytes, size: str) -> None:
    """The reference image must be a JPEG, PNG or WebP of exactly the requested size."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            dimensions = image.size
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise invalid(
            "Invalid input_reference: the file is not a supported image (jpeg, png or webp).",
            param="input_reference",
            code="invalid_image_format",
        ) from exc
    if image_format not in REFERENCE_FORMATS:
        raise invalid(
            f"Invalid input_reference: unsupported image format '{image_format}'. "
            "Supported formats are jpeg, png and webp.",
            param="input_reference",
            code="invalid_image_format",
        )
    if dimensions != size_dimensions(size):
        raise invalid(
            "Inpaint image must match the requested width and height "
            f"(got {dimensions[0]}x{dimensions[1]}, expected {size}).",
            param="input_reference",
        )


def parse_json_reference(value: object) -> str:
    """The JSON form of `input_reference`: exactly one of `image_url` / `file_id`; returns the image_url."""
    if not isinstance(value, dict):
        raise invalid(
            "Invalid type for 'input_reference': expected an object with 'image_url' or 'file_id'.",
            param="input_reference",
            code="invalid_type",
        )
    for key in value:
        if key not in ("image_url", "file_id"):
            raise invalid(
                f"Unknown parameter: 'input_reference.{key}'.",
                param=f"input_reference.{key}",
                code="unknown_parameter",
            )
    if ("image_url" in value) == ("file_id" in value):
        raise invalid(
            "Invalid 'input_reference': provide exactly one of 'image_url' or 'file_id'.",
            param="input_reference",
        )
    if "file_id" in value:
        # The simulator has no Files API to resolve the id against.
        raise invalid(
            "input_reference.file_id is not supported by this upstream; send image_url instead.",
            param="input_reference.file_id",
            code="unsupported_value",
        )
    url = value["image_url"]
    if not isinstance(url, str) or not url:
        raise invalid(
            "Invalid type for 'input_reference.image_url': expected a string.",
            param="input_reference.image_url",
            code="invalid_type",
        )
    if len(url) > MAX_IMAGE_URL_CHARS:
        raise invalid(
            f"Invalid 'input_reference.image_url': longer than {MAX_IMAGE_URL_CHARS} characters.",
            param="input_reference.image_url",
            code="string_above_max_length",
        )
    if not url.startswith(("data:", "https://", "http://")):
        raise invalid(
            "Invalid 'input_reference.image_url': expected a data URL or an http(s) URL.",
            param="input_reference.image_url",
        )
    return url


def decode_data_url(url: str) -> bytes:
    """`data:<mime>;base64,<payload>` → bytes (only the base64 form is meaningful for images)."""
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise invalid(
            "Invalid 'input_reference.image_url': expected a base64 data URL.",
            param="input_reference.image_url",
        )
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid(
            "Invalid 'input_reference.image_url': the base64 payload does not decode.",
            param="input_reference.image_url",
        ) from exc


__all__ = [
    "CreateParams",
    "DeriveParams",
    "SimulatorError",
    "check_character_fields",
    "check_create_fields",
    "check_edit_fields",
    "check_extension_fields",
    "check_reference_image",
    "check_remix_fields",
    "decode_data_url",
    "parse_json_reference",
    "size_dimensions",
]
