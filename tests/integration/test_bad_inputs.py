"""A table of bad requests: each gets a 4xx in OpenAI's error shape, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from tests.integration.conftest import gateway_client
from tests.support.images import data_url, image_bytes

PNG_720x1280 = image_bytes(720, 1280)
GIF_720x1280 = image_bytes(720, 1280, "GIF")
MULTIPART_BOUNDARY = "x-boundary"


def multipart(**fields: Any) -> dict[str, Any]:
    return {"files": {name: value if isinstance(value, tuple) else (None, value) for name, value in fields.items()}}


CASES: list[tuple[str, dict[str, Any], int, str | None]] = [
    # (case, request kwargs for POST /v1/videos, status, param)
    ("missing prompt", multipart(size="720x1280"), 400, "prompt"),
    ("empty prompt", multipart(prompt=""), 400, "prompt"),
    ("prompt over 32000 chars", multipart(prompt="x" * 32001), 400, "prompt"),
    ("prompt with a NUL", {"json": {"prompt": "a\u0000b"}}, 400, "prompt"),
    ("mass assignment: owner", {"json": {"prompt": "p", "caller_id": "someone-else"}}, 400, "caller_id"),
    ("mass assignment: status", multipart(prompt="p", status="completed"), 400, "status"),
    ("mass assignment: s3_key", {"json": {"prompt": "p", "s3_key": "videos/x/video.mp4"}}, 400, "s3_key"),
    ("mass assignment: provider key", {"json": {"prompt": "p", "provider_key": "sk-x"}}, 400, "provider_key"),
    ("metadata not an object", {"json": {"prompt": "p", "metadata": ["a"]}}, 400, "metadata"),
    ("metadata value not a string", {"json": {"prompt": "p", "metadata": {"a": 1}}}, 400, "metadata.a"),
    (
        "metadata with too many keys",
        {"json": {"prompt": "p", "metadata": {str(n): "v" for n in range(17)}}},
        400,
        "metadata",
    ),
    ("seconds not in 4/8/12", multipart(prompt="p", seconds="5"), 400, "seconds"),
    ("size not one of the four", multipart(prompt="p", size="1920x1080"), 400, "size"),
    ("unknown multipart field", multipart(prompt="p", quality="hd"), 400, "quality"),
    ("sdk bracket array field", multipart(prompt="p", **{"characters[][id]": "char_1"}), 400, "characters[][id]"),
    ("json seconds as a number", {"json": {"prompt": "p", "seconds": 4}}, 400, "seconds"),
    ("json prompt as a list", {"json": {"prompt": ["p"]}}, 400, "prompt"),
    ("json unknown field", {"json": {"prompt": "p", "style": "noir"}}, 400, "style"),
    ("json body not an object", {"json": ["prompt"]}, 400, None),
    ("json malformed", {"content": b'{"prompt": ', "headers": {"content-type": "application/json"}}, 400, None),
    (
        "json input_reference file_id",
        {"json": {"prompt": "p", "input_reference": {"file_id": "file_1"}}},
        400,
        "input_reference.file_id",
    ),
    (
        "json input_reference as a string",
        {"json": {"prompt": "p", "input_reference": "http://x"}},
        400,
        "input_reference",
    ),
    (
        "json image_url not https or data",
        {"json": {"prompt": "p", "input_reference": {"image_url": "ftp://x/a"}}},
        400,
        "input_reference.image_url",
    ),
    (
        "json image_url bad base64",
        {"json": {"prompt": "p", "input_reference": {"image_url": "data:image/png;base64,%%%"}}},
        400,
        "input_reference.image_url",
    ),
    (
        "json image of the wrong size",
        {"json": {"prompt": "p", "input_reference": {"image_url": data_url(image_bytes(64, 64))}}},
        400,
        "input_reference",
    ),
    (
        "multipart image of the wrong size",
        multipart(prompt="p", size="1280x720", input_reference=("a.png", PNG_720x1280, "image/png")),
        400,
        "input_reference",
    ),
    (
        "multipart image that is a GIF",
        multipart(prompt="p", input_reference=("a.gif", GIF_720x1280, "image/gif")),
        415,
        "input_reference",
    ),
    (
        "multipart image that is text",
        multipart(prompt="p", input_reference=("a.png", b"hello, not an image", "image/png")),
        415,
        "input_reference",
    ),
    (
        "multipart image truncated",
        multipart(prompt="p", input_reference=("a.png", PNG_720x1280[:200], "image/png")),
        422,
        "input_reference",
    ),
    ("multipart prompt sent as a file", multipart(prompt=("p.txt", b"prompt", "text/plain")), 400, "prompt"),
    ("multipart input_reference as text", multipart(prompt="p", input_reference="http://x"), 400, "input_reference"),
    (
        "malformed multipart",
        {
            "content": b"--nope\r\nbroken",
            "headers": {"content-type": f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"},
        },
        400,
        None,
    ),
    (
        "multipart without boundary",
        {"content": b"prompt=p", "headers": {"content-type": "multipart/form-data"}},
        400,
        None,
    ),
    (
        "form-urlencoded body",
        {"content": b"prompt=p", "headers": {"content-type": "application/x-www-form-urlencoded"}},
        415,
        None,
    ),
    ("text body", {"content": b"p", "headers": {"content-type": "text/plain"}}, 415, None),
    ("no body at all", {}, 415, None),
]


@pytest.mark.parametrize(("case", "request_kwargs", "status", "param"), CASES, ids=[c[0] for c in CASES])
async def test_bad_create_requests_get_openai_shaped_4xx(
    api: httpx.AsyncClient, case: str, request_kwargs: dict[str, Any], status: int, param: str | None
) -> None:
    response = await api.post("/v1/videos", **request_kwargs)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


async def test_an_oversize_body_is_413(gateway_app: FastAPI, api: httpx.AsyncClient) -> None:
    limit = gateway_app.state.settings.api.max_request_bytes
    response = await api.post(
        "/v1/videos", files={"prompt": (None, "p"), "input_reference": ("a.png", b"\0" * (limit + 1), "image/png")}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_an_oversize_chunked_body_without_length_is_413(gateway_app: FastAPI, api: httpx.AsyncClient) -> None:
    limit = gateway_app.state.settings.api.max_request_bytes

    async def chunks() -> Any:
        for _ in range(limit // 65536 + 2):
            yield b"\0" * 65536

    response = await api.post("/v1/videos", content=chunks(), headers={"content-type": "application/json"})
    assert response.status_code == 413


class TestPromptsThatAreFine:
    @pytest.mark.parametrize(
        "prompt",
        [
            "un chat qui joue du piano 🎹",
            "قطة تعزف على البيانو",
            "tab\tand\nnewline",
            "x" * 32000,
            "\u202eRTL override",
        ],
        ids=["emoji", "arabic", "control whitespace", "exactly 32000", "bidi override"],
    )
    async def test_unicode_and_control_characters_are_accepted_and_kept(
        self, api: httpx.AsyncClient, prompt: str
    ) -> None:
        response = await api.post("/v1/videos", json={"prompt": prompt})
        assert response.status_code == 200, response.text
        assert (await api.get(f"/v1/videos/{response.json()['id']}")).json()["prompt"] == prompt


class TestRemixAndQueryInputs:
    async def test_remix_with_unknown_field_is_400(self, api: httpx.AsyncClient) -> None:
        response = await api.post("/v1/videos/video_x/remix", json={"prompt": "p", "seconds": "8"})
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "seconds"

    @pytest.mark.parametrize(
        ("params", "param"), [({"limit": "101"}, "limit"), ({"limit": "ten"}, "limit"), ({"order": "up"}, "order")]
    )
    async def test_bad_list_parameters_are_400(
        self, api: httpx.AsyncClient, params: dict[str, str], param: str
    ) -> None:
        response = await api.get("/v1/videos", params=params)
        assert response.status_code == 400
        assert response.json()["error"]["param"] == param

    async def test_unknown_after_cursor_is_404(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/videos", params={"after": "video_nope"})
        assert response.status_code == 404


class TestAuthentication:
    @pytest.mark.parametrize(
        "headers",
        [{}, {"authorization": "Bearer "}, {"authorization": "Basic abc"}, {"authorization": "Bearer vg_wrong"}],
        ids=["no header", "empty bearer", "basic scheme", "wrong key"],
    )
    async def test_missing_or_wrong_key_is_401_on_every_route(
        self, gateway_app: FastAPI, headers: dict[str, str]
    ) -> None:
        async with gateway_client(gateway_app, None) as client:
            answers = [
                await client.post("/v1/videos", files={"prompt": (None, "p")}, headers=headers),
                await client.get("/v1/videos", headers=headers),
                await client.get("/v1/videos/video_x", headers=headers),
                await client.get("/v1/videos/video_x/content", headers=headers),
                await client.delete("/v1/videos/video_x", headers=headers),
                await client.post("/v1/videos/video_x/remix", json={"prompt": "p"}, headers=headers),
            ]
        for response in answers:
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "invalid_request_error"

    async def test_unknown_route_is_404_in_openai_shape(self, api: httpx.AsyncClient) -> None:
        response = await api.get("/v1/nothing-here")
        assert response.status_code == 404
        assert set(response.json()["error"]) == {"message", "type", "param", "code"}
