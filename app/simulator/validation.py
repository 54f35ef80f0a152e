"""Pure checks of create and remix requests against the contract (no I/O).

The routes gather the raw fields (from multipart text parts or a JSON object) and the reference image
bytes; this module decides whether they are acceptable and normalises them. Messages follow the wording the
real API uses, so a gateway that passes them through shows users familiar text.
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


def check_create_fields(fields: Mapping[str, object]) -> CreateParams:
    """Validate the non-file fields of a create request; `input_reference` is checked separately."""
    reject_unknown_fields(fields, CREATE_FIELDS)
    prompt = check_prompt(fields.get("prompt"))
    model = fields.get("model")
    if model is None:
        model = DEFAULT_MODEL
    # The model is an open string upstream (new snapshots appear without an SDK release).
    if not isinstance(model, str) or not model:
        raise invalid("Invalid 'model': expected a non-empty string.", param="model", code="invalid_type")
    seconds = _check_choice("seconds", fields.get("seconds"), SECONDS_VALUES, DEFAULT_SECONDS)
    size = _check_choice("size", fields.get("size"), SIZE_VALUES, DEFAULT_SIZE)
    return CreateParams(prompt=prompt, model=model, seconds=seconds, size=size)


def check_remix_fields(fields: Mapping[str, object]) -> str:
    reject_unknown_fields(fields, REMIX_FIELDS)
    return check_prompt(fields.get("prompt"))


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
    "SimulatorError",
    "check_create_fields",
    "check_reference_image",
    "check_remix_fields",
    "decode_data_url",
    "parse_json_reference",
    "size_dimensions",
]
