"""Pure checks of a create against Replicate's contract and the input schemas of the models served (no I/O).

A create is `POST /v1/models/{owner}/{name}/predictions` with `{"input": {...}, "webhook"?: URL,
"webhook_events_filter"?: [...]}`. Each model publishes an input schema (field types, allowed values,
defaults, what is required); `check_create` applies the model's schema and answers what the render needs
(frame size, whole seconds, a first-frame image) or a 422 listing every bad field the way Replicate does.
The schemas below follow the models' pages on Replicate. Where Replicate's behaviour is undocumented the
simulator is strict on purpose (an input field the schema does not have, a body field Replicate does not
take), so an adapter that relies on leniency fails here and not in production.

Images are URIs: a `data:` URI is decoded and must be a PNG, JPEG or WebP; an http(s) URL is accepted and not
fetched (the simulator reaches no other host), and the render then has no first frame to draw.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from app.simulator.replicate.errors import bad_request, invalid_input, not_found

FieldKind = Literal["string", "integer", "number", "boolean", "uri"]
WEBHOOK_EVENTS = ("start", "output", "logs", "completed")
BODY_FIELDS = frozenset({"input", "webhook", "webhook_events_filter"})
IMAGE_FORMATS = frozenset({"PNG", "JPEG", "WEBP"})
_DATA_URI = re.compile(r"data:(?P<type>[\w.+-]+/[\w.+-]+)?(?:;[\w-]+=[\w.-]+)*;base64,(?P<data>.*)", re.S)
# Values of `input` as resolved: what was sent, with the schema's defaults for the rest.
Values = Mapping[str, Any]
Problem = tuple[str, str, str]  # (type, field, description), as in Replicate's `invalid_fields`


def _no_rules(values: Values) -> list[Problem]:
    return []


@dataclass(frozen=True, slots=True)
class InputField:
    kind: FieldKind
    choices: tuple[object, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    required: bool = False
    default: object = None


@dataclass(frozen=True, slots=True)
class VideoModel:
    """One model's input schema and how its resolved input becomes a render."""

    fields: Mapping[str, InputField]
    # (resolved input, the first-frame image's (width, height) if known) → the frame size.
    frame_size: Callable[[Values, tuple[int, int] | None], tuple[int, int]]
    # Resolved input → whole seconds of video.
    seconds: Callable[[Values], int]
    image_field: str | None = None
    # Combinations the schema's single fields cannot express (Veo: 1080p only at 8 s).
    rules: Callable[[Values], list[Problem]] = _no_rules


@dataclass(frozen=True, slots=True)
class CreateRequest:
    model: str
    prompt: str
    # The input as sent; a prediction echoes it back.
    input: dict[str, Any]
    width: int
    height: int
    seconds: int
    image: bytes | None
    webhook: str | None
    webhook_events: tuple[str, ...]


def _duration(values: Values) -> int:
    return int(values["duration"])


def _by_aspect(ratio: str, short_side: int) -> tuple[int, int]:
    """Width and height for `W:H` with the shorter side `short_side` (even numbers, as H.264 needs)."""
    wide, high = (int(part) for part in ratio.split(":"))
    if wide >= high:
        return _even(short_side * wide / high), short_side
    return short_side, _even(short_side * high / wide)


def _even(value: float) -> int:
    return int(round(value / 2) * 2)


def _shaped_like(image: tuple[int, int] | None, landscape: tuple[int, int]) -> tuple[int, int]:
    """The frame of a model whose output takes its first frame's orientation."""
    width, height = landscape
    if image is None or image[0] > image[1]:
        return width, height
    if image[0] == image[1]:
        return height, height
    return height, width


_P = {"480p": 480, "512p": 512, "720p": 720, "768p": 768, "1080p": 1080}


def _veo_rules(values: Values) -> list[Problem]:
    if values["resolution"] == "1080p" and values["duration"] != 8:
        return [("enum", "input.duration", "1080p resolution is only available with duration 8")]
    return []


def _hailuo_rules(values: Values) -> list[Problem]:
    if values["resolution"] == "1080p" and values["duration"] != 6:
        return [("enum", "input.duration", "1080p resolution supports only a duration of 6 seconds")]
    return []


VEO = VideoModel(
    fields={
        "prompt": InputField("string", required=True),
        "aspect_ratio": InputField("string", choices=("16:9", "9:16"), default="16:9"),
        "duration": InputField("integer", choices=(4, 6, 8), default=8),
        "resolution": InputField("string", choices=("720p", "1080p"), default="720p"),
        "image": InputField("uri"),
        "last_frame": InputField("uri"),
        "negative_prompt": InputField("string"),
        "generate_audio": InputField("boolean", default=True),
        "seed": InputField("integer"),
    },
    frame_size=lambda values, _image: _by_aspect(values["aspect_ratio"], _P[values["resolution"]]),
    seconds=_duration,
    image_field="image",
    rules=_veo_rules,
)
KLING = VideoModel(
    fields={
        "prompt": InputField("string", required=True),
        "start_image": InputField("uri", required=True),
        "end_image": InputField("uri"),
        "mode": InputField("string", choices=("standard", "pro"), default="standard"),
        "duration": InputField("integer", choices=(5, 10), default=5),
        "negative_prompt": InputField("string"),
    },
    frame_size=lambda values, image: _shaped_like(image, (1280, 720) if values["mode"] == "standard" else (1920, 1080)),
    seconds=_duration,
    image_field="start_image",
)
KLING_MASTER = VideoModel(
    fields={
        "prompt": InputField("string", required=True),
        "start_image": InputField("uri"),
        "aspect_ratio": InputField("string", choices=("16:9", "9:16", "1:1"), default="16:9"),
        "duration": InputField("integer", choices=(5, 10), default=5),
        "negative_prompt": InputField("string"),
    },
    # The start image's shape wins over `aspect_ratio`.
    frame_size=lambda values, image: (
        _by_aspect(values["aspect_ratio"], 1080) if image is None else _shaped_like(image, (1920, 1080))
    ),
    seconds=_duration,
    image_field="start_image",
)
HAILUO = VideoModel(
    fields={
        "prompt": InputField("string", required=True),
        "duration": InputField("integer", choices=(6, 10), default=6),
        "resolution": InputField("string", choices=("512p", "768p", "1080p"), default="1080p"),
        "first_frame_image": InputField("uri"),
        "prompt_optimizer": InputField("boolean", default=True),
    },
    frame_size=lambda values, image: _shaped_like(
        image, {"512p": (912, 512), "768p": (1366, 768), "1080p": (1920, 1080)}[values["resolution"]]
    ),
    seconds=_duration,
    image_field="first_frame_image",
    rules=_hailuo_rules,
)
# Seedance's nominal frames for its common shapes; the rarer ratios are computed.
_SEEDANCE_FRAMES = {
    ("480p", "16:9"): (864, 480),
    ("480p", "9:16"): (480, 864),
    ("480p", "1:1"): (640, 640),
    ("720p", "1:1"): (960, 960),
    ("1080p", "1:1"): (1440, 1440),
}


def _seedance_frame(values: Values, image: tuple[int, int] | None) -> tuple[int, int]:
    key = (values["resolution"], values["aspect_ratio"])
    frame = _SEEDANCE_FRAMES.get(key) or _by_aspect(values["aspect_ratio"], _P[values["resolution"]])
    # With an image, its own shape wins over `aspect_ratio`.
    return frame if image is None else _shaped_like(image, (max(frame), min(frame)))


SEEDANCE = VideoModel(
    fields={
        "prompt": InputField("string", required=True),
        "image": InputField("uri"),
        "duration": InputField("integer", minimum=2, maximum=12, default=5),
        "resolution": InputField("string", choices=("480p", "720p", "1080p"), default="1080p"),
        "aspect_ratio": InputField(
            "string", choices=("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21"), default="16:9"
        ),
        "fps": InputField("integer", choices=(24,), default=24),
        "camera_fixed": InputField("boolean", default=False),
        "seed": InputField("integer"),
    },
    frame_size=_seedance_frame,
    seconds=_duration,
    image_field="image",
)
WAN = VideoModel(
    fields={
        "prompt": InputField("string", required=True),
        "num_frames": InputField("integer", minimum=81, maximum=121, default=81),
        "frames_per_second": InputField("integer", minimum=5, maximum=30, default=16),
        "resolution": InputField("string", choices=("480p", "720p"), default="480p"),
        "aspect_ratio": InputField("string", choices=("16:9", "9:16"), default="16:9"),
        "go_fast": InputField("boolean", default=True),
        "sample_shift": InputField("number", minimum=1, maximum=20, default=12),
        "optimize_prompt": InputField("boolean", default=False),
        "disable_safety_checker": InputField("boolean", default=False),
        "seed": InputField("integer"),
    },
    frame_size=lambda values, _image: (
        {"16:9": (832, 480), "9:16": (480, 832)}[values["aspect_ratio"]]
        if values["resolution"] == "480p"
        else _by_aspect(values["aspect_ratio"], 720)
    ),
    # Frames over frame rate, in whole seconds (81 frames at 16 fps is a 5 s clip).
    seconds=lambda values: max(1, round(values["num_frames"] / values["frames_per_second"])),
)
MODELS: Mapping[str, VideoModel] = {
    "google/veo-3": VEO,
    "google/veo-3-fast": VEO,
    "google/veo-3.1": VEO,
    "google/veo-3.1-fast": VEO,
    "kwaivgi/kling-v2.1": KLING,
    "kwaivgi/kling-v2.1-master": KLING_MASTER,
    "minimax/hailuo-02": HAILUO,
    "bytedance/seedance-1-pro": SEEDANCE,
    "bytedance/seedance-1-lite": SEEDANCE,
    "wan-video/wan-2.2-t2v-fast": WAN,
}


def check_model(owner: str, name: str) -> VideoModel:
    model = MODELS.get(f"{owner}/{name}")
    if model is None:
        raise not_found(f"Model {owner}/{name} not found.")
    return model


def check_create(model_name: str, model: VideoModel, body: object) -> CreateRequest:
    """Validate a create body for `model`; raises `ReplicateError` 400 (the body) or 422 (the input)."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    problems: list[Problem] = []
    for name in body:
        if name not in BODY_FIELDS:
            problems.append(("additional_property", name, f"Additional property {name} is not allowed"))
    webhook, events = _check_webhook(body, problems)
    values = body.get("input")
    if not isinstance(values, dict):
        problems.append(("required", "input", "input is required and must be an object"))
        raise invalid_input(problems)
    resolved, image = _check_input(model, values, problems)
    if problems:
        raise invalid_input(problems)
    problems.extend(model.rules(resolved))
    if problems:
        raise invalid_input(problems)
    dimensions = _image_size(image) if image is not None else None
    width, height = model.frame_size(resolved, dimensions)
    return CreateRequest(
        model=model_name,
        prompt=resolved["prompt"],
        input=dict(values),
        width=width,
        height=height,
        seconds=model.seconds(resolved),
        image=image,
        webhook=webhook,
        webhook_events=events,
    )


def _check_webhook(body: Mapping[str, Any], problems: list[Problem]) -> tuple[str | None, tuple[str, ...]]:
    webhook = body.get("webhook")
    if webhook is not None and (not isinstance(webhook, str) or not webhook.startswith(("https://", "http://"))):
        problems.append(("format", "webhook", "webhook must be an http or https URL"))
        webhook = None
    events: tuple[str, ...] = WEBHOOK_EVENTS  # Replicate sends every event when no filter is given
    given = body.get("webhook_events_filter")
    if given is not None:
        if not isinstance(given, list) or not given or any(event not in WEBHOOK_EVENTS for event in given):
            listed = ", ".join(WEBHOOK_EVENTS)
            problems.append(("enum", "webhook_events_filter", f"webhook_events_filter items must be one of: {listed}"))
        else:
            events = tuple(dict.fromkeys(given))
    return webhook, events


def _check_input(
    model: VideoModel, values: Mapping[str, Any], problems: list[Problem]
) -> tuple[dict[str, Any], bytes | None]:
    resolved: dict[str, Any] = {}
    image: bytes | None = None
    for name in values:
        if name not in model.fields:
            problems.append(("additional_property", f"input.{name}", f"Additional property {name} is not allowed"))
    for name, spec in model.fields.items():
        where = f"input.{name}"
        if name not in values or values[name] is None:
            if spec.required:
                problems.append(("required", where, f"{name} is required"))
            elif spec.default is not None:
                resolved[name] = spec.default
            continue
        value = values[name]
        problem = _check_value(name, spec, value)
        if problem is not None:
            problems.append((problem[0], where, problem[1]))
            continue
        resolved[name] = value
        if spec.kind == "uri":
            data, problem_text = _decode_uri(value)
            if problem_text is not None:
                problems.append(("format", where, problem_text))
            elif name == model.image_field:
                image = data
    return resolved, image


def _check_value(name: str, spec: InputField, value: object) -> tuple[str, str] | None:
    """(type, description) of what is wrong with one value, or None."""
    if spec.kind in ("string", "uri"):
        if not isinstance(value, str):
            return "invalid_type", f"{name} must be a string"
        if spec.kind == "string" and spec.required and not value.strip():
            return "required", f"{name} is required"
    elif spec.kind == "boolean":
        if not isinstance(value, bool):
            return "invalid_type", f"{name} must be a boolean"
    elif spec.kind == "integer":
        # A JSON number with a fraction, a numeric string or a boolean is not an integer.
        if isinstance(value, bool) or not isinstance(value, int):
            return "invalid_type", f"{name} must be an integer"
    elif isinstance(value, bool) or not isinstance(value, int | float):
        return "invalid_type", f"{name} must be a number"
    if spec.choices and value not in spec.choices:
        listed = ", ".join(str(choice) for choice in spec.choices)
        return "enum", f"{name} must be one of the following: {listed}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            return "number_gte", f"{name} must be greater than or equal to {spec.minimum:g}"
        if spec.maximum is not None and value > spec.maximum:
            return "number_lte", f"{name} must be less than or equal to {spec.maximum:g}"
    return None


def _decode_uri(value: str) -> tuple[bytes | None, str | None]:
    """(image bytes or None for a link, problem text or None)."""
    if value.startswith(("https://", "http://")):
        return None, None
    match = _DATA_URI.fullmatch(value)
    if match is None:
        return None, "must be an http(s) URL or a base64 data URI"
    try:
        data = base64.b64decode(match.group("data"), validate=True)
    except (binascii.Error, ValueError):
        return None, "the data URI is not valid base64"
    try:
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        return None, "the data URI is not a readable image"
    if image_format not in IMAGE_FORMATS:
        return None, f"unsupported image format {image_format}; use PNG, JPEG or WebP"
    return data, None


def _image_size(data: bytes) -> tuple[int, int]:
    with Image.open(io.BytesIO(data)) as image:
        width, height = image.size
    return width, height
