"""The simulator's request checks: defaults, every refusal's code/param, and reference images."""

from __future__ import annotations

import base64
import io

import pytest
from PIL import Image

from app.simulator.errors import SimulatorError
from app.simulator.validation import (
    check_create_fields,
    check_reference_image,
    check_remix_fields,
    decode_data_url,
    parse_json_reference,
)


def image_bytes(size: tuple[int, int], fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 20, 30)).save(buffer, format=fmt)
    return buffer.getvalue()


class TestCreateFields:
    def test_defaults_fill_model_seconds_and_size(self) -> None:
        params = check_create_fields({"prompt": "a cat"})
        assert (params.prompt, params.model, params.seconds, params.size) == ("a cat", "sora-2", "4", "720x1280")

    def test_model_is_an_open_string(self) -> None:
        assert check_create_fields({"prompt": "x", "model": "sora-9-future"}).model == "sora-9-future"

    def test_every_allowed_choice_passes(self) -> None:
        for seconds in ("4", "8", "12"):
            for size in ("720x1280", "1280x720", "1024x1792", "1792x1024"):
                params = check_create_fields({"prompt": "x", "seconds": seconds, "size": size})
                assert (params.seconds, params.size) == (seconds, size)

    @pytest.mark.parametrize(
        ("fields", "param", "code"),
        [
            ({}, "prompt", "missing_required_parameter"),
            ({"prompt": ""}, "prompt", "string_below_min_length"),
            ({"prompt": "x" * 32001}, "prompt", "string_above_max_length"),
            ({"prompt": 5}, "prompt", "invalid_type"),
            ({"prompt": "x", "seconds": "5"}, "seconds", "invalid_value"),
            ({"prompt": "x", "seconds": 4}, "seconds", "invalid_value"),
            ({"prompt": "x", "size": "1920x1080"}, "size", "invalid_value"),
            ({"prompt": "x", "quality": "high"}, "quality", "unknown_parameter"),
            ({"prompt": "x", "model": ""}, "model", "invalid_type"),
        ],
    )
    def test_refusals_name_the_param_and_code(self, fields: dict[str, object], param: str, code: str) -> None:
        with pytest.raises(SimulatorError) as caught:
            check_create_fields(fields)
        assert caught.value.status_code == 400
        assert (caught.value.param, caught.value.code) == (param, code)
        assert caught.value.body()["error"]["type"] == "invalid_request_error"

    def test_prompt_of_exactly_32000_chars_passes(self) -> None:
        assert len(check_create_fields({"prompt": "y" * 32000}).prompt) == 32000


class TestRemixFields:
    def test_prompt_only(self) -> None:
        assert check_remix_fields({"prompt": "again"}) == "again"

    def test_other_fields_are_unknown(self) -> None:
        with pytest.raises(SimulatorError) as caught:
            check_remix_fields({"prompt": "again", "size": "1280x720"})
        assert caught.value.code == "unknown_parameter"


class TestReferenceImage:
    @pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
    def test_supported_format_of_the_requested_size_passes(self, fmt: str) -> None:
        check_reference_image(image_bytes((1280, 720), fmt), "1280x720")

    def test_size_mismatch_is_refused(self) -> None:
        with pytest.raises(SimulatorError) as caught:
            check_reference_image(image_bytes((720, 1280), "PNG"), "1280x720")
        assert caught.value.param == "input_reference"
        assert "must match the requested width and height" in caught.value.message

    def test_gif_is_refused(self) -> None:
        with pytest.raises(SimulatorError) as caught:
            check_reference_image(image_bytes((1280, 720), "GIF"), "1280x720")
        assert caught.value.code == "invalid_image_format"

    def test_non_image_bytes_are_refused(self) -> None:
        with pytest.raises(SimulatorError) as caught:
            check_reference_image(b"not an image at all", "1280x720")
        assert caught.value.code == "invalid_image_format"


class TestJsonReference:
    def test_image_url_is_returned(self) -> None:
        assert parse_json_reference({"image_url": "https://example.test/a.png"}) == "https://example.test/a.png"

    @pytest.mark.parametrize(
        ("value", "code"),
        [
            ({"file_id": "file_1"}, "unsupported_value"),
            ({"image_url": "data:x", "file_id": "file_1"}, "invalid_value"),
            ({}, "invalid_value"),
            ({"image_url": "data:x", "detail": "high"}, "unknown_parameter"),
            ("data:image/png;base64,AAAA", "invalid_type"),
            ({"image_url": "ftp://example.test/a.png"}, "invalid_value"),
        ],
    )
    def test_refusals(self, value: object, code: str) -> None:
        with pytest.raises(SimulatorError) as caught:
            parse_json_reference(value)
        assert caught.value.code == code

    def test_data_url_decodes(self) -> None:
        payload = image_bytes((4, 4), "PNG")
        url = "data:image/png;base64," + base64.b64encode(payload).decode()
        assert decode_data_url(url) == payload

    @pytest.mark.parametrize("url", ["data:image/png,rawbytes", "data:image/png;base64,***"])
    def test_undecodable_data_url_is_refused(self, url: str) -> None:
        with pytest.raises(SimulatorError):
            decode_data_url(url)
