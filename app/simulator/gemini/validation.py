"""Pure checks of a `predictLongRunning` request against Google's documented contract for Veo (no I/O).

The route hands over the model name and the parsed JSON body; `check_create` decides whether Google would
accept them and returns what the render needs. The models, the durations (4, 6 or 8 s, a JSON number), the
aspect ratios (16:9, 9:16) and the 1080p-only-at-8-s rule follow Google's documentation. Where Google's
behaviour is undocumented the simulator is strict on purpose (a string `durationSeconds`, an unknown
parameter, more than one sample), so an adapter that relies on leniency fails here and not in production.

An extension (`instances[0].video`, Veo 3.1 models only) is checked here as far as the body goes: the video
is referenced by the `uri` of a file Veo generated (`.../v1beta/files/{id}:download`; an `encodedVideo` or
`encoding` beside it, as Google's SDK sends after downloading the video, is tolerated and ignored), the prompt
is optional, `resolution` is 720p, `durationSeconds` is 8 if given (Google: "must be 8 when using extension";
the extension itself adds 7 s), and no image, last frame or reference images come with it. Whether that file
exists, is still kept, is 720p, matches `aspectRatio` and is short enough is the runtime's check (it needs the
store): `ExtendRequest` carries the file id.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import urlsplit

from PIL import Image, UnidentifiedImageError

from app.simulator.gemini.errors import invalid_argument, not_found

MODELS = frozenset(
    {
        "veo-3.1-generate-preview",
        "veo-3.1-fast-generate-preview",
        "veo-3.1-lite-generate-preview",
        "veo-3.0-generate-001",
        "veo-3.0-fast-generate-001",
        "veo-2.0-generate-001",
    }
)
# Veo 3.1 extends videos Veo generated; the others cannot.
EXTENDING_MODELS = frozenset(model for model in MODELS if model.startswith("veo-3.1"))
DURATIONS = (4, 6, 8)
DEFAULT_DURATION = 8
# An extension adds 7 s to an input of at most 141 s (so at most 148 s in all), at 720p only; its
# `durationSeconds` parameter must be 8 (Google's parameter table).
EXTENSION_SECONDS = 7
MAX_EXTENSION_INPUT_SECONDS = 141
EXTENSION_DURATION_PARAMETER = 8
EXTENSION_RESOLUTION = "720p"
# The path of a generated file's URI, as `state.download_uri` builds it.
FILE_URI_PATH = re.compile(r"/v1beta/files/([A-Za-z0-9_-]{1,64}):download")
VIDEO_FIELDS = frozenset({"uri", "encodedVideo", "encoding"})
ASPECT_RATIOS = ("16:9", "9:16")
RESOLUTIONS = ("720p", "1080p")
# (aspectRatio, resolution) → (width, height)
DIMENSIONS: dict[tuple[str, str], tuple[int, int]] = {
    ("16:9", "720p"): (1280, 720),
    ("9:16", "720p"): (720, 1280),
    ("16:9", "1080p"): (1920, 1080),
    ("9:16", "1080p"): (1080, 1920),
}
PERSON_GENERATION = ("allow_all", "allow_adult", "dont_allow")
IMAGE_MIME_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/webp": "WEBP"}
MAX_REFERENCE_IMAGES = 3
BODY_FIELDS = frozenset({"instances", "parameters"})
INSTANCE_FIELDS = frozenset({"prompt", "image", "lastFrame", "referenceImages", "video"})
PARAMETER_FIELDS = frozenset(
    {
        "sampleCount",
        "durationSeconds",
        "aspectRatio",
        "resolution",
        "personGeneration",
        "negativePrompt",
        "enhancePrompt",
    }
)


@dataclass(frozen=True, slots=True)
class CreateRequest:
    model: str
    prompt: str
    duration_seconds: int
    aspect_ratio: str
    resolution: str
    image: bytes | None

    @property
    def dimensions(self) -> tuple[int, int]:
        return DIMENSIONS[(self.aspect_ratio, self.resolution)]


@dataclass(frozen=True, slots=True)
class ExtendRequest:
    """A valid extension body: the id of the generated file to extend, checked against the store later."""

    model: str
    prompt: str
    file_id: str
    # As sent; None: the source's.
    aspect_ratio: str | None


def check_model(model: str, method: str) -> None:
    """404 like Google for a model it does not serve, or a method the model does not have."""
    if model not in MODELS or method != "predictLongRunning":
        raise not_found(
            f"models/{model} is not found for API version v1beta, or is not supported for {method}. "
            "Call ListModels to see the list of available models and their supported methods."
        )


def check_create(model: str, body: object) -> CreateRequest | ExtendRequest:
    """Validate a create (or, with `instances[0].video`, an extension) body for `model` (already known to
    exist); raises `GoogleError` 400s."""
    if not isinstance(body, dict):
        raise invalid_argument("Invalid JSON payload received. Expected an object at the top level.")
    _reject_unknown(body, BODY_FIELDS, "")
    instances = body.get("instances")
    if not isinstance(instances, list) or len(instances) != 1 or not isinstance(instances[0], dict):
        raise invalid_argument("`instances` must be a list holding exactly one instance object.")
    instance: dict[str, object] = instances[0]
    _reject_unknown(instance, INSTANCE_FIELDS, "instances[0]")
    if "video" in instance:
        return _check_extend(model, instance, body.get("parameters", {}))
    prompt = instance.get("prompt")
    if prompt is None:
        raise invalid_argument("A prompt is required: `instances[0].prompt` is missing.")
    if not isinstance(prompt, str) or not prompt.strip():
        raise invalid_argument("`instances[0].prompt` must be a non-empty string.")
    image = _check_image(instance["image"], "instances[0].image") if "image" in instance else None
    if "lastFrame" in instance:
        _check_image(instance["lastFrame"], "instances[0].lastFrame")
    references = _check_reference_images(instance.get("referenceImages"))

    parameters = body.get("parameters", {})
    if not isinstance(parameters, dict):
        raise invalid_argument("`parameters` must be an object.")
    _reject_unknown(parameters, PARAMETER_FIELDS, "parameters")
    duration = _check_duration(parameters.get("durationSeconds"))
    aspect_ratio = _check_choice("aspectRatio", parameters.get("aspectRatio", "16:9"), ASPECT_RATIOS)
    resolution = _check_choice("resolution", parameters.get("resolution", "720p"), RESOLUTIONS)
    if resolution == "1080p" and duration != 8:
        raise invalid_argument("1080p resolution is only supported with durationSeconds 8.")
    if references and duration != 8:
        raise invalid_argument("Reference images are only supported with durationSeconds 8.")
    _check_other_parameters(parameters)
    return CreateRequest(
        model=model,
        prompt=prompt,
        duration_seconds=duration,
        aspect_ratio=aspect_ratio,
        resolution=resolution,
        image=image,
    )


def _check_extend(model: str, instance: Mapping[str, object], parameters: object) -> ExtendRequest:
    if model not in EXTENDING_MODELS:
        raise invalid_argument(
            f"Video extension (`instances[0].video`) is not supported by models/{model}; "
            "it is supported by Veo 3.1 models."
        )
    for name in ("image", "lastFrame", "referenceImages"):
        if name in instance:
            raise invalid_argument(f"`instances[0].{name}` cannot be combined with `instances[0].video`.")
    prompt = instance.get("prompt", "")
    if not isinstance(prompt, str):
        raise invalid_argument("`instances[0].prompt` must be a string.")
    file_id = _check_video_reference(instance["video"])
    if not isinstance(parameters, dict):
        raise invalid_argument("`parameters` must be an object.")
    _reject_unknown(parameters, PARAMETER_FIELDS, "parameters")
    duration = parameters.get("durationSeconds", EXTENSION_DURATION_PARAMETER)
    if not _is_integral(duration) or duration != EXTENSION_DURATION_PARAMETER:
        raise invalid_argument(
            f"`durationSeconds` must be {EXTENSION_DURATION_PARAMETER} when using video extension (got "
            f"{duration!r}); the extension adds {EXTENSION_SECONDS} seconds to the input video."
        )
    resolution = _check_choice("resolution", parameters.get("resolution", EXTENSION_RESOLUTION), RESOLUTIONS)
    if resolution != EXTENSION_RESOLUTION:
        raise invalid_argument(f"Video extension is only supported at {EXTENSION_RESOLUTION} resolution.")
    aspect_ratio = parameters.get("aspectRatio")
    if aspect_ratio is not None:
        aspect_ratio = _check_choice("aspectRatio", aspect_ratio, ASPECT_RATIOS)
    _check_other_parameters(parameters)
    return ExtendRequest(model=model, prompt=prompt.strip(), file_id=file_id, aspect_ratio=aspect_ratio)


def _check_video_reference(value: object) -> str:
    """`instances[0].video`: the `uri` of a file Veo generated; the file's id."""
    if not isinstance(value, dict):
        raise invalid_argument("`instances[0].video` must be an object with the uri of a video generated by Veo.")
    _reject_unknown(value, VIDEO_FIELDS, "instances[0].video")
    uri = value.get("uri")
    if not isinstance(uri, str) or not uri:
        raise invalid_argument(
            "`instances[0].video.uri` is required: video extension takes a video previously generated by Veo, "
            "referenced by the uri of its generated sample."
        )
    if "encodedVideo" in value and not isinstance(value["encodedVideo"], str):
        raise invalid_argument("`instances[0].video.encodedVideo` must be a base64 string.")
    if "encoding" in value and value["encoding"] != "video/mp4":
        raise invalid_argument(f"`instances[0].video.encoding` must be video/mp4 (got {value['encoding']!r}).")
    target = urlsplit(uri)
    match = FILE_URI_PATH.fullmatch(target.path)
    if target.scheme not in ("http", "https") or match is None:
        raise invalid_argument(
            f"`instances[0].video.uri` {uri[:200]!r} is not a video generated by Veo: expected the uri of a "
            "generated sample (.../v1beta/files/{id}:download?alt=media)."
        )
    return match.group(1)


def _check_other_parameters(parameters: Mapping[str, object]) -> None:
    sample_count = parameters.get("sampleCount", 1)
    if not _is_integral(sample_count) or sample_count != 1:
        raise invalid_argument("`sampleCount` must be 1: this model generates one video per request.")
    if "personGeneration" in parameters:
        _check_choice("personGeneration", parameters["personGeneration"], PERSON_GENERATION)
    if "negativePrompt" in parameters and not isinstance(parameters["negativePrompt"], str):
        raise invalid_argument("`negativePrompt` must be a string.")
    if "enhancePrompt" in parameters and not isinstance(parameters["enhancePrompt"], bool):
        raise invalid_argument("`enhancePrompt` must be a boolean.")


def _reject_unknown(fields: Mapping[str, object], allowed: frozenset[str], where: str) -> None:
    for name in fields:
        if name not in allowed:
            at = f" at '{where}'" if where else ""
            raise invalid_argument(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')


def _is_integral(value: object) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


def _check_duration(value: object) -> int:
    if value is None:
        return DEFAULT_DURATION
    if not _is_integral(value):
        raise invalid_argument(f"`durationSeconds` must be a number, one of 4, 6 or 8 (got {value!r}).")
    assert isinstance(value, int | float)
    seconds = int(value)
    if seconds not in DURATIONS:
        raise invalid_argument(
            f"The number value for `durationSeconds` is out of bound: {seconds}. Supported values are 4, 6 and 8."
        )
    return seconds


def _check_choice(name: str, value: object, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        listed = ", ".join(choices)
        raise invalid_argument(f"Unsupported value for `{name}`: {value!r}. Supported values are {listed}.")
    return value


def _check_image(value: object, where: str) -> bytes:
    """An inline image `{bytesBase64Encoded, mimeType}`: valid base64 of a PNG, JPEG or WebP."""
    if not isinstance(value, dict):
        raise invalid_argument(f"`{where}` must be an object with bytesBase64Encoded and mimeType.")
    _reject_unknown(value, frozenset({"bytesBase64Encoded", "mimeType"}), where)
    encoded = value.get("bytesBase64Encoded")
    mime_type = value.get("mimeType")
    if not isinstance(encoded, str) or not encoded:
        raise invalid_argument(f"`{where}.bytesBase64Encoded` is required.")
    if not isinstance(mime_type, str) or mime_type not in IMAGE_MIME_TYPES:
        listed = ", ".join(IMAGE_MIME_TYPES)
        raise invalid_argument(f"`{where}.mimeType` must be one of {listed} (got {mime_type!r}).")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise invalid_argument(f"`{where}.bytesBase64Encoded` is not valid base64.") from exc
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise invalid_argument(f"`{where}` could not be decoded as an image.") from exc
    if image_format not in IMAGE_MIME_TYPES.values():
        raise invalid_argument(f"`{where}` has unsupported image format {image_format}.")
    return data


def _check_reference_images(value: object) -> int:
    if value is None:
        return 0
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_REFERENCE_IMAGES:
        raise invalid_argument(f"`instances[0].referenceImages` must hold 1 to {MAX_REFERENCE_IMAGES} images.")
    for index, reference in enumerate(value):
        where = f"instances[0].referenceImages[{index}]"
        if not isinstance(reference, dict) or "image" not in reference:
            raise invalid_argument(f"`{where}` must be an object with an image.")
        _reject_unknown(reference, frozenset({"image", "referenceType"}), where)
        _check_image(reference["image"], f"{where}.image")
    return len(value)
