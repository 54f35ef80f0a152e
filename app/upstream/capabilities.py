"""What a model can render, checked before anything is paid for or sent upstream.

Each adapter describes its models as `ModelCapabilities`; `check_create` turns a request the model cannot
honour into a 400 in OpenAI's shape that names the parameter and lists the values that model takes. Values
are never silently changed (a 12 s request is not quietly rendered as 8 s).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from app.core.errors import InvalidRequest
from app.upstream.schemas import CreateVideoCommand, SourceVideo

ALL_VARIANTS = frozenset({"video", "thumbnail", "spritesheet"})
# The variants each kind's provider serves itself; the archive derives the others from the archived MP4.
# Read by the adapters and, through `served_variants`, by the archive (which knows a profile's kind only).
SERVED_VARIANTS: Mapping[str, frozenset[str]] = {
    "openai": ALL_VARIANTS,
    "gemini": frozenset({"video"}),
    "seedance": frozenset({"video"}),
    "fal": frozenset({"video"}),
    "replicate": frozenset({"video"}),
}


def served_variants(kind: str) -> frozenset[str]:
    return SERVED_VARIANTS.get(kind, ALL_VARIANTS)


@dataclass(frozen=True)
class ModelCapabilities:
    """The values one model accepts, and what its provider can do beyond a plain create."""

    provider: str  # in messages: "Veo on the Gemini API"
    seconds: tuple[str, ...]
    sizes: tuple[str, ...]
    # Sizes that take only some durations (Veo: 1080p renders only 8 s).
    seconds_by_size: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    # OpenAI's contract wants the reference image at exactly the requested size; Veo takes any image.
    image_must_match_size: bool = True
    # Whether a link in `input_reference.image_url` is taken (the gateway fetches it and sends the bytes).
    accepts_image_url: bool = True
    remix: bool = True
    # Edits (`POST /v1/videos/edits`) of the model's own renders.
    edit: bool = False
    # The lengths of a new segment an extension (`POST /v1/videos/extensions`) may add; empty: cannot extend.
    extend_seconds: tuple[str, ...] = ()
    # Sizes an extension's source may have (Veo extends only 720p videos); empty: any.
    extend_sizes: tuple[str, ...] = ()
    # Whether an edit or extension may start from an uploaded MP4 rather than one of the model's renders.
    derive_from_upload: bool = False
    # Characters (`POST /v1/videos/characters`), made on this model's profile.
    characters: bool = False

    def operations(self) -> str:
        """What the model can do, for a refusal's message."""
        done = ["create (text or image to video)", "retrieve", "list", "delete", "content"]
        if self.remix:
            done.append("remix")
        if self.edit:
            done.append("edit")
        if self.extend_seconds:
            done.append("extend")
        if self.characters:
            done.append("characters")
        return ", ".join(done)


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(f"'{value}'" for value in values)


def check_create(command: CreateVideoCommand, capabilities: ModelCapabilities) -> None:
    """A 400 naming the first parameter the model cannot honour; nothing when it can honour them all."""
    model = command.model
    if command.seconds not in capabilities.seconds:
        raise InvalidRequest(
            f"Invalid value: '{command.seconds[:20]}'. Supported values are: {_choices(capabilities.seconds)}"
            f" (model '{model}').",
            param="seconds",
            code="invalid_value",
        )
    if command.size not in capabilities.sizes:
        raise InvalidRequest(
            f"Invalid value: '{command.size[:20]}'. Supported values are: {_choices(capabilities.sizes)}"
            f" (model '{model}').",
            param="size",
            code="invalid_value",
        )
    allowed = capabilities.seconds_by_size.get(command.size)
    if allowed is not None and command.seconds not in allowed:
        raise InvalidRequest(
            f"Invalid value: '{command.seconds}'. At size '{command.size}' model '{model}' renders only "
            f"{_choices(allowed)} seconds.",
            param="seconds",
            code="invalid_value",
        )
    image = command.image
    if image is not None and capabilities.image_must_match_size and f"{image.width}x{image.height}" != command.size:
        raise InvalidRequest(
            f"'input_reference' is {image.width}x{image.height}; it must match the requested size {command.size}.",
            param="input_reference",
            code="invalid_image_size",
        )
    if command.image_url is not None and not capabilities.accepts_image_url:
        raise InvalidRequest(
            f"{capabilities.provider} needs the reference image itself: send it as a file part or a base64 "
            "'data:' URL, not a link.",
            param="input_reference.image_url",
            code="unsupported_by_provider",
        )


def check_remix(model: str, capabilities: ModelCapabilities) -> None:
    if not capabilities.remix:
        raise InvalidRequest(
            f"Model '{model}' ({capabilities.provider}) cannot remix a video. It supports: "
            f"{capabilities.operations()}.",
            param="video_id",
            code="unsupported_by_provider",
        )


def _unsupported(model: str, capabilities: ModelCapabilities, what: str, *, param: str) -> InvalidRequest:
    return InvalidRequest(
        f"Model '{model}' ({capabilities.provider}) cannot {what}. It supports: {capabilities.operations()}.",
        param=param,
        code="unsupported_by_provider",
    )


def check_edit(model: str, capabilities: ModelCapabilities, source: SourceVideo) -> None:
    """A 400 `unsupported_by_provider` when the model cannot edit this source."""
    if not capabilities.edit:
        raise _unsupported(model, capabilities, "edit a video", param="video")
    if source.upload is not None and not capabilities.derive_from_upload:
        raise _unsupported(model, capabilities, "edit an uploaded video, only its own renders", param="video")


def check_extend(model: str, capabilities: ModelCapabilities, *, seconds: str, source: SourceVideo) -> None:
    """A 400 when the model cannot extend this source by `seconds` (never silently another length)."""
    if not capabilities.extend_seconds:
        raise _unsupported(model, capabilities, "extend a video", param="video")
    if source.upload is not None and not capabilities.derive_from_upload:
        raise _unsupported(model, capabilities, "extend an uploaded video, only its own renders", param="video")
    if seconds not in capabilities.extend_seconds:
        raise InvalidRequest(
            f"Invalid value: '{seconds[:20]}'. Supported values are: {_choices(capabilities.extend_seconds)}"
            f" (model '{model}' extends by these lengths).",
            param="seconds",
            code="invalid_value",
        )
    if capabilities.extend_sizes and source.size not in capabilities.extend_sizes:
        raise InvalidRequest(
            f"Model '{model}' ({capabilities.provider}) extends only videos of size "
            f"{_choices(capabilities.extend_sizes)}; this one is '{source.size}'.",
            param="video",
            code="unsupported_by_provider",
        )


def check_characters(model: str, capabilities: ModelCapabilities) -> None:
    if not capabilities.characters:
        raise _unsupported(model, capabilities, "make characters", param="model")
