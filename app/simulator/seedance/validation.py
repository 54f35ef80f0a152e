"""Pure checks of a create-task request against ModelArk's documented contract for Seedance (no I/O).

The route hands over the parsed JSON body; `check_create` decides whether Ark would accept it and returns what
the render needs. Documented, and modelled here:
- the models and what each takes: durations (Seedance 1.0: 2-12 s; 1.5 Pro: 4-12 s; 2.0 series: 4-15 s; the
  last two also `-1`, "let the model choose"), resolutions (480p and 720p everywhere, 1080p except on 2.0 Fast
  and Mini, 4k on 2.0 only), the six aspect ratios plus `adaptive`, which inputs (text only, a first frame,
  first and last frames, reference images), audio (1.5 Pro and 2.0), the `flex` tier (not on 2.0);
- the output's pixel size for each (resolution, ratio): two tables, one for the 1.0 series (1248x704 at 720p
  16:9) and one for 1.5 Pro and the 2.0 series (1280x720);
- images: a `data:` URI of jpeg, png, webp, bmp, tiff or gif (decoded and checked: each side 300 to 6000 px,
  width/height strictly between 0.4 and 2.5), or an http(s) URL, accepted but not fetched;
- `callback_url`, `seed`, `watermark`, `camera_fixed`, `return_last_frame` (accepted, no last frame is made),
  `service_tier`, `execution_expires_after` (3600 to 259200 s).
Where Ark is lenient or undocumented the simulator is strict on purpose (an unknown field, a float or string
`duration`, the legacy `--rs 720p` text parameters are not parsed), so an adapter relying on leniency fails
here, not in production. Video and audio references, draft tasks and `frames` are refused as not modelled.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
from dataclasses import dataclass
from typing import Literal

from PIL import Image, UnidentifiedImageError

from app.simulator.seedance.errors import bad_value, invalid_parameter, model_not_found

ImageRule = Literal["none", "optional", "required"]
Family = Literal["v1", "v2"]

RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9")
ADAPTIVE = "adaptive"
# (resolution, ratio) → (width, height) of the output MP4.
DIMENSIONS: dict[Family, dict[tuple[str, str], tuple[int, int]]] = {
    "v1": {
        ("480p", "16:9"): (864, 480),
        ("480p", "4:3"): (736, 544),
        ("480p", "1:1"): (640, 640),
        ("480p", "3:4"): (544, 736),
        ("480p", "9:16"): (480, 864),
        ("480p", "21:9"): (960, 416),
        ("720p", "16:9"): (1248, 704),
        ("720p", "4:3"): (1120, 832),
        ("720p", "1:1"): (960, 960),
        ("720p", "3:4"): (832, 1120),
        ("720p", "9:16"): (704, 1248),
        ("720p", "21:9"): (1504, 640),
        ("1080p", "16:9"): (1920, 1088),
        ("1080p", "4:3"): (1664, 1248),
        ("1080p", "1:1"): (1440, 1440),
        ("1080p", "3:4"): (1248, 1664),
        ("1080p", "9:16"): (1088, 1920),
        ("1080p", "21:9"): (2176, 928),
    },
    "v2": {
        ("480p", "16:9"): (864, 496),
        ("480p", "4:3"): (752, 560),
        ("480p", "1:1"): (640, 640),
        ("480p", "3:4"): (560, 752),
        ("480p", "9:16"): (496, 864),
        ("480p", "21:9"): (992, 432),
        ("720p", "16:9"): (1280, 720),
        ("720p", "4:3"): (1112, 834),
        ("720p", "1:1"): (960, 960),
        ("720p", "3:4"): (834, 1112),
        ("720p", "9:16"): (720, 1280),
        ("720p", "21:9"): (1470, 630),
        ("1080p", "16:9"): (1920, 1080),
        ("1080p", "4:3"): (1664, 1248),
        ("1080p", "1:1"): (1440, 1440),
        ("1080p", "3:4"): (1248, 1664),
        ("1080p", "9:16"): (1080, 1920),
        ("1080p", "21:9"): (2206, 946),
        ("4k", "16:9"): (3840, 2160),
        ("4k", "4:3"): (3326, 2494),
        ("4k", "1:1"): (2880, 2880),
        ("4k", "3:4"): (2494, 3326),
        ("4k", "9:16"): (2160, 3840),
        ("4k", "21:9"): (4398, 1886),
    },
}


@dataclass(frozen=True, slots=True)
class ModelSpec:
    min_duration: int
    max_duration: int
    # Whether `duration: -1` (the model picks the length) is taken.
    auto_duration: bool
    resolutions: tuple[str, ...]
    family: Family
    images: ImageRule = "optional"
    last_frame: bool = True
    reference_images: int = 0
    audio: bool = False
    flex: bool = True


_V2 = ModelSpec(4, 15, True, ("480p", "720p", "1080p", "4k"), "v2", reference_images=9, audio=True, flex=False)
_V2_SMALL = ModelSpec(4, 15, True, ("480p", "720p"), "v2", reference_images=9, audio=True, flex=False)
_V1 = ModelSpec(2, 12, False, ("480p", "720p", "1080p"), "v1")
MODELS: dict[str, ModelSpec] = {
    "dreamina-seedance-2-0-260128": _V2,
    "dreamina-seedance-2-0-fast-260128": _V2_SMALL,
    "dreamina-seedance-2-0-mini-260615": _V2_SMALL,
    "seedance-1-5-pro-251215": ModelSpec(4, 12, True, ("480p", "720p", "1080p"), "v2", audio=True),
    "seedance-1-0-pro-250528": _V1,
    "seedance-1-0-pro-fast-251015": ModelSpec(2, 12, False, ("480p", "720p", "1080p"), "v1", last_frame=False),
    "seedance-1-0-lite-t2v-250428": ModelSpec(2, 12, False, ("480p", "720p", "1080p"), "v1", images="none"),
    "seedance-1-0-lite-i2v-250428": ModelSpec(
        2, 12, False, ("480p", "720p", "1080p"), "v1", images="required", reference_images=4
    ),
}
# When a request leaves them out.
DEFAULT_DURATION = 5
DEFAULT_RESOLUTION = "720p"
DEFAULT_RATIO = "16:9"
# `duration: -1` renders this long (the "model's choice").
AUTO_DURATION = 5
BODY_FIELDS = frozenset(
    {
        "model",
        "content",
        "ratio",
        "resolution",
        "duration",
        "seed",
        "camera_fixed",
        "watermark",
        "generate_audio",
        "return_last_frame",
        "callback_url",
        "service_tier",
        "execution_expires_after",
        "frames",
        "draft",
    }
)
IMAGE_FORMATS = {
    "jpeg": "JPEG",
    "jpg": "JPEG",
    "png": "PNG",
    "webp": "WEBP",
    "bmp": "BMP",
    "tiff": "TIFF",
    "gif": "GIF",
}
_DATA_URI = re.compile(r"data:image/([a-zA-Z]+);base64,(.*)", re.DOTALL)
MIN_IMAGE_SIDE, MAX_IMAGE_SIDE = 300, 6000
MIN_IMAGE_RATIO, MAX_IMAGE_RATIO = 0.4, 2.5
MAX_PROMPT_CHARS = 20_000
MAX_CALLBACK_URL_CHARS = 2048
SEED_RANGE = (-1, 2**32 - 1)
EXECUTION_EXPIRES_RANGE = (3600, 259_200)
DEFAULT_EXECUTION_EXPIRES_AFTER = 172_800


@dataclass(frozen=True, slots=True)
class CreateRequest:
    model: str
    prompt: str
    duration: int
    ratio: str
    resolution: str
    width: int
    height: int
    # The first frame's bytes, when one was sent as a `data:` URI.
    image: bytes | None
    callback_url: str | None
    seed: int
    service_tier: str
    execution_expires_after: int
    generate_audio: bool | None


def check_create(body: object) -> CreateRequest:
    """Validate a create body; raises `ArkError` (400, or 404 for an unknown model)."""
    if not isinstance(body, dict):
        raise invalid_parameter("The request body must be a JSON object.")
    for name in body:
        if name not in BODY_FIELDS:
            raise bad_value(str(name)[:64], "unknown parameter.")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise bad_value("model", "a model ID is required.")
    spec = MODELS.get(model)
    if spec is None:
        raise model_not_found(model)
    for name in ("frames", "draft"):
        if name in body:
            raise bad_value(name, "not supported by this simulator.")
    prompt, image, has_image = _check_content(body.get("content"), spec)
    duration = _check_duration(body.get("duration", DEFAULT_DURATION), spec)
    resolution = body.get("resolution", DEFAULT_RESOLUTION)
    if not isinstance(resolution, str) or resolution not in spec.resolutions:
        raise bad_value("resolution", f"{model} supports {', '.join(spec.resolutions)}.")
    ratio = body.get("ratio", ADAPTIVE if has_image else DEFAULT_RATIO)
    if not isinstance(ratio, str) or ratio not in (*RATIOS, ADAPTIVE):
        raise bad_value("ratio", f"supported values are {', '.join((*RATIOS, ADAPTIVE))}.")
    if ratio == ADAPTIVE:
        ratio = _closest_ratio(image) if image is not None else DEFAULT_RATIO
    width, height = DIMENSIONS[spec.family][(resolution, ratio)]
    for name in ("camera_fixed", "watermark", "return_last_frame", "generate_audio"):
        if name in body and not isinstance(body[name], bool):
            raise bad_value(name, "must be a boolean.")
    generate_audio = body.get("generate_audio")
    if generate_audio is not None and not spec.audio:
        raise bad_value("generate_audio", f"{model} does not generate audio.")
    seed = body.get("seed", -1)
    if not _is_int(seed) or not SEED_RANGE[0] <= seed <= SEED_RANGE[1]:
        raise bad_value("seed", f"must be an integer in [{SEED_RANGE[0]}, {SEED_RANGE[1]}].")
    service_tier = body.get("service_tier", "default")
    if service_tier not in ("default", "flex") or (service_tier == "flex" and not spec.flex):
        raise bad_value("service_tier", f"{model} takes {'default or flex' if spec.flex else 'default only'}.")
    expires_after = body.get("execution_expires_after", DEFAULT_EXECUTION_EXPIRES_AFTER)
    low, high = EXECUTION_EXPIRES_RANGE
    if not _is_int(expires_after) or not low <= expires_after <= high:
        raise bad_value("execution_expires_after", f"must be an integer number of seconds in [{low}, {high}].")
    return CreateRequest(
        model=model,
        prompt=prompt,
        duration=duration,
        ratio=ratio,
        resolution=resolution,
        width=width,
        height=height,
        image=image,
        callback_url=_check_callback_url(body.get("callback_url")),
        seed=seed,
        service_tier=str(service_tier),
        execution_expires_after=expires_after,
        generate_audio=generate_audio if spec.audio else None,
    )


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_duration(value: object, spec: ModelSpec) -> int:
    if not _is_int(value):
        raise bad_value("duration", f"must be an integer number of seconds (got {str(value)[:20]!r}).")
    assert isinstance(value, int)
    if value == -1 and spec.auto_duration:
        return AUTO_DURATION
    if not spec.min_duration <= value <= spec.max_duration:
        auto = " or -1" if spec.auto_duration else ""
        raise bad_value("duration", f"must be in [{spec.min_duration}, {spec.max_duration}]{auto} (got {value}).")
    return value


def _check_callback_url(value: object) -> str | None:
    if value is None:
        return None
    if (
        not isinstance(value, str)
        or len(value) > MAX_CALLBACK_URL_CHARS
        or not value.startswith(("http://", "https://"))
    ):
        raise bad_value("callback_url", f"must be an http(s) URL of at most {MAX_CALLBACK_URL_CHARS} characters.")
    return value


def _check_content(value: object, spec: ModelSpec) -> tuple[str, bytes | None, bool]:
    """(prompt, first-frame bytes, whether any image was given)."""
    if not isinstance(value, list) or not value:
        raise bad_value("content", "must be a non-empty list of content items.")
    prompt: str | None = None
    first_frame: bytes | None = None
    roles: list[str] = []
    for index, item in enumerate(value):
        where = f"content[{index}]"
        if not isinstance(item, dict):
            raise bad_value(where, "must be an object.")
        kind = item.get("type")
        if kind == "text":
            if set(item) - {"type", "text"}:
                raise bad_value(where, "a text item has only `type` and `text`.")
            text = item.get("text")
            if prompt is not None:
                raise bad_value(where, "only one text item is allowed.")
            if not isinstance(text, str) or not text.strip() or len(text) > MAX_PROMPT_CHARS:
                raise bad_value(f"{where}.text", f"must be a non-empty string of at most {MAX_PROMPT_CHARS} chars.")
            prompt = text
        elif kind == "image_url":
            if set(item) - {"type", "image_url", "role"}:
                raise bad_value(where, "an image item has only `type`, `image_url` and `role`.")
            role = item.get("role", "first_frame")
            if role not in ("first_frame", "last_frame", "reference_image"):
                raise bad_value(f"{where}.role", "must be first_frame, last_frame or reference_image.")
            data = _check_image(item.get("image_url"), f"{where}.image_url")
            roles.append(role)
            if role == "first_frame":
                first_frame = data
        elif kind in ("video_url", "audio_url", "draft_task"):
            raise bad_value(f"{where}.type", f"{kind} items are not supported by this simulator.")
        else:
            raise bad_value(f"{where}.type", "must be text or image_url.")
    _check_roles(roles, spec)
    if prompt is None and not roles:
        raise bad_value("content", "a text prompt or an image is required.")
    return prompt or "", first_frame, bool(roles)


def _check_roles(roles: list[str], spec: ModelSpec) -> None:
    if roles and spec.images == "none":
        raise bad_value("content", "this model generates from text only; it takes no image.")
    if not roles and spec.images == "required":
        raise bad_value("content", "this model needs an image (a first frame or reference images).")
    references = roles.count("reference_image")
    if references and not spec.reference_images:
        raise bad_value("content", "this model takes no reference images.")
    if references and (references > spec.reference_images or len(roles) != references):
        raise bad_value("content", f"1 to {spec.reference_images} reference images, not mixed with frames.")
    frames = [role for role in roles if role != "reference_image"]
    if frames.count("first_frame") > 1 or frames.count("last_frame") > 1:
        raise bad_value("content", "at most one first frame and one last frame.")
    if "last_frame" in frames and ("first_frame" not in frames or not spec.last_frame):
        raise bad_value("content", "a last frame needs a first frame, on a model that takes both.")


def _check_image(value: object, where: str) -> bytes | None:
    """The decoded bytes of a `data:` URI image; None for an http(s) URL (accepted, never fetched)."""
    url = value.get("url") if isinstance(value, dict) and set(value) == {"url"} else None
    if not isinstance(url, str) or not url:
        raise bad_value(where, "must be an object with a `url`.")
    if url.startswith(("http://", "https://")):
        return None
    match = _DATA_URI.fullmatch(url)
    if match is None:
        raise bad_value(f"{where}.url", "must be an http(s) URL or data:image/<format>;base64,<data>.")
    image_format = IMAGE_FORMATS.get(match.group(1).lower())
    if image_format is None:
        raise bad_value(f"{where}.url", f"supported formats are {', '.join(sorted(set(IMAGE_FORMATS)))}.")
    try:
        data = base64.b64decode(match.group(2), validate=True)
    except (binascii.Error, ValueError):
        raise bad_value(f"{where}.url", "the base64 data is not valid.") from None
    try:
        with Image.open(io.BytesIO(data)) as image:
            found_format, (width, height) = image.format, image.size
            image.verify()
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError):
        raise bad_value(f"{where}.url", "the data could not be decoded as an image.") from None
    if found_format != image_format:
        raise bad_value(f"{where}.url", f"the data is {found_format}, not {match.group(1)}.")
    if not (MIN_IMAGE_SIDE <= width <= MAX_IMAGE_SIDE and MIN_IMAGE_SIDE <= height <= MAX_IMAGE_SIDE):
        sides = f"{MIN_IMAGE_SIDE} to {MAX_IMAGE_SIDE} px"
        raise bad_value(f"{where}.url", f"each side must be {sides} (the image is {width}x{height}).")
    if not MIN_IMAGE_RATIO < width / height < MAX_IMAGE_RATIO:
        raise bad_value(f"{where}.url", f"width/height must be between {MIN_IMAGE_RATIO} and {MAX_IMAGE_RATIO}.")
    return data


def _closest_ratio(image: bytes) -> str:
    """`adaptive` with a first frame: the supported ratio nearest the image's own."""
    with Image.open(io.BytesIO(image)) as opened:
        width, height = opened.size
    actual = width / height

    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(w / h - actual)

    return min(RATIOS, key=distance)
