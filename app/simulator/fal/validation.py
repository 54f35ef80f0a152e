"""Pure checks of a submit body against the input schema fal documents for each endpoint (no I/O).

The route hands over the endpoint id and the parsed JSON body; `check_submit` decides whether fal would take
them and returns what the render needs (size, length, reference image). Each endpoint's schema follows fal's
published one for that model: the field names, their types and allowed values (Veo's `duration` is `"8s"`,
Kling's `"5"`, Wan counts `num_frames` at `frames_per_second`, Luma's is `"5s"`), which fields exist on the
text-to-video and on the image-to-video endpoint. A wrong value is fal's 422 `{"detail": [{"loc", "msg",
"type"}]}`. Where fal is lenient or undocumented (unknown fields, an `image_url` that is a plain link), the
simulator is strict on purpose, so an adapter relying on leniency fails here and not in production: unknown
fields are refused, and only `data:` URIs are decoded (links are taken but not fetched: no network).
"""

from __future__ import annotations

import base64
import binascii
import io
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from PIL import Image, UnidentifiedImageError

from app.simulator.fal.errors import FalError, input_error, not_found, unprocessable

Task = Literal["text", "image"]
# A field's check: the value if valid, else a FalError.
Check = Callable[[str, object], object]


def _enum(*choices: str) -> Check:
    def check(name: str, value: object) -> object:
        if not isinstance(value, str) or value not in choices:
            listed = ", ".join(f"'{choice}'" for choice in choices)
            raise _invalid(name, f"Input should be {listed}", "enum", value)
        return value

    return check


def _bool(name: str, value: object) -> object:
    if not isinstance(value, bool):
        raise _invalid(name, "Input should be a valid boolean", "bool_type", value)
    return value


def _text(name: str, value: object) -> object:
    if not isinstance(value, str):
        raise _invalid(name, "Input should be a valid string", "string_type", value)
    return value


def _int(low: int, high: int) -> Check:
    def check(name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int):
            raise _invalid(name, "Input should be a valid integer", "int_type", value)
        if not low <= value <= high:
            raise _invalid(name, f"Input should be between {low} and {high}", "range_error", value)
        return value

    return check


def _number(low: float, high: float) -> Check:
    def check(name: str, value: object) -> object:
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise _invalid(name, "Input should be a valid number", "float_type", value)
        if not low <= value <= high:
            raise _invalid(name, f"Input should be between {low} and {high}", "range_error", value)
        return value

    return check


def _image(name: str, value: object) -> object:
    """A `data:` URI of a PNG, JPEG or WebP (decoded), or an http(s) link (taken as is, never fetched)."""
    if not isinstance(value, str) or not value:
        raise _invalid(name, "Input should be a valid URL or data URI", "url_type", None)
    if value.startswith(("https://", "http://")):
        return None
    header, _, payload = value.partition(",")
    if not header.startswith("data:image/") or not header.endswith(";base64") or not payload:
        raise _invalid(name, "Input should be an http(s) URL or a base64 data URI of an image", "url_parsing", None)
    try:
        data = base64.b64decode(payload, validate=True)
        with Image.open(io.BytesIO(data)) as image:
            image_format = image.format
            image.verify()
    except (binascii.Error, ValueError, UnidentifiedImageError, OSError, SyntaxError):
        raise _invalid(name, "The image could not be decoded", "image_load_error", None) from None
    if image_format not in ("PNG", "JPEG", "WEBP"):
        raise _invalid(name, f"Unsupported image format {image_format}", "unsupported_image_format", None)
    return data


def _invalid(name: str, msg: str, error_type: str, value: object) -> FalError:
    extra = {"input": value} if isinstance(value, str | int | float | bool) else {}
    return unprocessable([input_error([name], msg, error_type, **extra)])


@dataclass(frozen=True)
class Schema:
    """One endpoint's input schema, and how its values decide the render's shape."""

    task: Task
    fields: Mapping[str, Check]
    defaults: Mapping[str, object]
    # Lines of each resolution value (`720p` → 720); fixed endpoints name one resolution in `defaults`.
    length: Callable[[Mapping[str, object]], int]
    # (aspect ratio, resolution) → exact size where the model's differs from the rule in `dimensions`.
    sizes: Mapping[tuple[str, str], tuple[int, int]] = field(default_factory=dict)


LINES: Mapping[str, int] = {
    "480p": 480,
    "512P": 512,
    "540p": 540,
    "580p": 580,
    "720p": 720,
    "768P": 768,
    "1080p": 1080,
    "1080P": 1080,
}


def _seconds_suffixed(values: Mapping[str, object]) -> int:
    return int(str(values["duration"]).removesuffix("s"))


def _seconds_of_frames(values: Mapping[str, object]) -> int:
    frames, fps = values["num_frames"], values["frames_per_second"]
    assert isinstance(frames, int) and isinstance(fps, int)
    return max(1, round(frames / fps))


def _fixed(seconds: int) -> Callable[[Mapping[str, object]], int]:
    return lambda _values: seconds


_PROMPT = {"prompt": _text}
_VEO = {
    **_PROMPT,
    "aspect_ratio": _enum("16:9", "9:16"),
    "duration": _enum("4s", "6s", "8s"),
    "resolution": _enum("720p", "1080p"),
    "generate_audio": _bool,
    "negative_prompt": _text,
    "enhance_prompt": _bool,
    "auto_fix": _bool,
    "seed": _int(0, 2**32 - 1),
}
_VEO_DEFAULTS = {"aspect_ratio": "16:9", "duration": "8s", "resolution": "720p"}
_KLING_I2V = {
    **_PROMPT,
    "image_url": _image,
    "duration": _enum("5", "10"),
    "negative_prompt": _text,
    "cfg_scale": _number(0, 1),
}
_HAILUO_STANDARD_T2V = {**_PROMPT, "duration": _enum("6", "10"), "prompt_optimizer": _bool}
_SEEDANCE_I2V = {
    **_PROMPT,
    "image_url": _image,
    "end_image_url": _image,
    "resolution": _enum("480p", "720p", "1080p"),
    "duration": _enum(*(str(seconds) for seconds in range(2, 13))),
    "camera_fixed": _bool,
    "seed": _int(-1, 2**31 - 1),
    "enable_safety_checker": _bool,
}
_WAN_T2V = {
    **_PROMPT,
    "num_frames": _int(17, 161),
    "frames_per_second": _int(4, 60),
    "resolution": _enum("480p", "580p", "720p"),
    "aspect_ratio": _enum("16:9", "9:16", "1:1"),
    "negative_prompt": _text,
    "seed": _int(0, 2**31 - 1),
    "num_inference_steps": _int(2, 40),
    "guidance_scale": _number(1, 10),
    "enable_safety_checker": _bool,
    "enable_prompt_expansion": _bool,
}
_WAN_DEFAULTS = {"num_frames": 81, "frames_per_second": 16, "resolution": "720p"}
_WAN_SIZES = {("16:9", "480p"): (832, 480), ("9:16", "480p"): (480, 832)}
_LUMA = {
    **_PROMPT,
    "aspect_ratio": _enum("16:9", "9:16", "4:3", "3:4", "21:9", "9:21"),
    "resolution": _enum("540p", "720p", "1080p"),
    "duration": _enum("5s", "9s"),
    "loop": _bool,
}
_LUMA_DEFAULTS = {"aspect_ratio": "16:9", "resolution": "540p", "duration": "5s"}

VEO_T2V = Schema("text", _VEO, _VEO_DEFAULTS, _seconds_suffixed)
VEO_I2V = Schema(
    "image",
    {**_VEO, "image_url": _image, "aspect_ratio": _enum("auto", "16:9", "9:16")},
    {**_VEO_DEFAULTS, "aspect_ratio": "auto"},
    _seconds_suffixed,
)
KLING_T2V_PRO = Schema(
    "text",
    {
        **_PROMPT,
        "duration": _enum("5", "10"),
        "aspect_ratio": _enum("16:9", "9:16", "1:1"),
        "negative_prompt": _text,
        "cfg_scale": _number(0, 1),
    },
    {"duration": "5", "aspect_ratio": "16:9", "resolution": "1080p"},
    lambda values: int(str(values["duration"])),
)
KLING_I2V_PRO = Schema("image", _KLING_I2V, {"duration": "5", "resolution": "1080p"}, KLING_T2V_PRO.length)
KLING_I2V_STANDARD = Schema("image", _KLING_I2V, {"duration": "5", "resolution": "720p"}, KLING_T2V_PRO.length)
HAILUO_STANDARD_T2V = Schema(
    "text",
    _HAILUO_STANDARD_T2V,
    {"duration": "6", "resolution": "768P", "aspect_ratio": "16:9"},
    lambda values: int(str(values["duration"])),
)
HAILUO_STANDARD_I2V = Schema(
    "image",
    {**_HAILUO_STANDARD_T2V, "image_url": _image, "end_image_url": _image, "resolution": _enum("512P", "768P")},
    {"duration": "6", "resolution": "768P"},
    HAILUO_STANDARD_T2V.length,
)
HAILUO_PRO_T2V = Schema(
    "text", {**_PROMPT, "prompt_optimizer": _bool}, {"resolution": "1080P", "aspect_ratio": "16:9"}, _fixed(6)
)
HAILUO_PRO_I2V = Schema(
    "image",
    {**_PROMPT, "prompt_optimizer": _bool, "image_url": _image, "end_image_url": _image},
    {"resolution": "1080P"},
    _fixed(6),
)
SEEDANCE_T2V = Schema(
    "text",
    {
        **{k: v for k, v in _SEEDANCE_I2V.items() if k not in ("image_url", "end_image_url")},
        "aspect_ratio": _enum("21:9", "16:9", "4:3", "1:1", "3:4", "9:16"),
    },
    {"aspect_ratio": "16:9", "resolution": "1080p", "duration": "5"},
    lambda values: int(str(values["duration"])),
)
SEEDANCE_I2V = Schema("image", _SEEDANCE_I2V, {"resolution": "1080p", "duration": "5"}, SEEDANCE_T2V.length)
WAN_T2V = Schema("text", _WAN_T2V, {**_WAN_DEFAULTS, "aspect_ratio": "16:9"}, _seconds_of_frames, _WAN_SIZES)
WAN_I2V = Schema(
    "image",
    {**_WAN_T2V, "image_url": _image, "aspect_ratio": _enum("auto", "16:9", "9:16", "1:1")},
    {**_WAN_DEFAULTS, "aspect_ratio": "auto"},
    _seconds_of_frames,
    _WAN_SIZES,
)
LUMA_T2V = Schema("text", _LUMA, _LUMA_DEFAULTS, _seconds_suffixed)
LUMA_I2V = Schema("image", {**_LUMA, "image_url": _image, "end_image_url": _image}, _LUMA_DEFAULTS, _seconds_suffixed)

# The endpoints the simulator serves, by fal endpoint id.
ENDPOINTS: Mapping[str, Schema] = {
    "fal-ai/veo3.1": VEO_T2V,
    "fal-ai/veo3.1/fast": VEO_T2V,
    "fal-ai/veo3.1/image-to-video": VEO_I2V,
    "fal-ai/veo3.1/fast/image-to-video": VEO_I2V,
    "fal-ai/veo3": VEO_T2V,
    "fal-ai/veo3/fast": VEO_T2V,
    "fal-ai/kling-video/v2.5-turbo/pro/text-to-video": KLING_T2V_PRO,
    "fal-ai/kling-video/v2.5-turbo/pro/image-to-video": KLING_I2V_PRO,
    "fal-ai/kling-video/v2.5-turbo/standard/image-to-video": KLING_I2V_STANDARD,
    "fal-ai/minimax/hailuo-02/standard/text-to-video": HAILUO_STANDARD_T2V,
    "fal-ai/minimax/hailuo-02/standard/image-to-video": HAILUO_STANDARD_I2V,
    "fal-ai/minimax/hailuo-02/pro/text-to-video": HAILUO_PRO_T2V,
    "fal-ai/minimax/hailuo-02/pro/image-to-video": HAILUO_PRO_I2V,
    "fal-ai/bytedance/seedance/v1/pro/text-to-video": SEEDANCE_T2V,
    "fal-ai/bytedance/seedance/v1/pro/image-to-video": SEEDANCE_I2V,
    "fal-ai/bytedance/seedance/v1/lite/text-to-video": SEEDANCE_T2V,
    "fal-ai/bytedance/seedance/v1/lite/image-to-video": SEEDANCE_I2V,
    "fal-ai/wan/v2.2-a14b/text-to-video": WAN_T2V,
    "fal-ai/wan/v2.2-a14b/image-to-video": WAN_I2V,
    "fal-ai/luma-dream-machine/ray-2": LUMA_T2V,
    "fal-ai/luma-dream-machine/ray-2/image-to-video": LUMA_I2V,
    "fal-ai/luma-dream-machine/ray-2-flash": LUMA_T2V,
    "fal-ai/luma-dream-machine/ray-2-flash/image-to-video": LUMA_I2V,
}


@dataclass(frozen=True, slots=True)
class SubmitRequest:
    endpoint: str
    prompt: str
    width: int
    height: int
    seconds: int
    image: bytes | None


def check_endpoint(endpoint: str) -> Schema:
    schema = ENDPOINTS.get(endpoint)
    if schema is None:
        raise not_found(f"Application '{endpoint[:200]}' not found.")
    return schema


def check_submit(endpoint: str, body: object) -> SubmitRequest:
    """Validate a submit body for `endpoint`; raises `FalError` (404 unknown endpoint, 422 bad input)."""
    schema = check_endpoint(endpoint)
    if not isinstance(body, dict):
        raise unprocessable([{"loc": ["body"], "msg": "Input should be a valid dictionary", "type": "dict_type"}])
    errors: list[dict[str, Any]] = [
        input_error([name], "Extra inputs are not permitted", "extra_forbidden")
        for name in body
        if name not in schema.fields
    ]
    values: dict[str, object] = dict(schema.defaults)
    image: bytes | None = None
    for name, value in body.items():
        if name not in schema.fields:
            continue
        try:
            checked = schema.fields[name](name, value)
        except FalError as exc:
            assert isinstance(exc.detail, list)
            errors.extend(exc.detail)
            continue
        values[name] = checked
        if name == "image_url":
            image = checked if isinstance(checked, bytes) else None
    prompt = body.get("prompt")
    if prompt is None:
        errors.append(input_error(["prompt"], "Field required", "missing"))
    elif isinstance(prompt, str) and not prompt.strip():
        errors.append(input_error(["prompt"], "String should have at least 1 character", "string_too_short"))
    if schema.task == "image" and "image_url" not in body:
        errors.append(input_error(["image_url"], "Field required", "missing"))
    if errors:
        raise unprocessable(errors)
    assert isinstance(prompt, str)
    width, height = dimensions(schema, values, image)
    return SubmitRequest(endpoint, prompt, width, height, schema.length(values), image)


def dimensions(schema: Schema, values: Mapping[str, object], image: bytes | None) -> tuple[int, int]:
    """The video's size: the aspect ratio (or the image's, where the endpoint follows it) at the resolution."""
    resolution = str(values.get("resolution"))
    aspect = values.get("aspect_ratio")
    if isinstance(aspect, str) and (aspect, resolution) in schema.sizes:
        return schema.sizes[(aspect, resolution)]
    if isinstance(aspect, str) and aspect != "auto":
        across, down = (int(part) for part in aspect.split(":"))
        ratio = across / down
    elif image is not None:
        with Image.open(io.BytesIO(image)) as opened:
            ratio = opened.width / opened.height
    else:
        ratio = 16 / 9
    lines = LINES[resolution]
    # The resolution names the short side; H.264 wants even sides.
    if ratio >= 1:
        return _even(lines * ratio), lines
    return lines, _even(lines / ratio)


def _even(value: float) -> int:
    return max(2, round(value / 2) * 2)
