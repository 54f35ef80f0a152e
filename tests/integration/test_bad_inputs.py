"""A table of bad requests: each gets a 4xx in OpenAI's error shape, never a 500.

Hostile inputs too (the "Hardening" issue): bodies nested 10,000 deep, duplicate JSON keys, NUL bytes in
ids, cursors and metadata, invalid UTF-8, decompression bombs, and image URLs aimed at our own network.
"""

from __future__ import annotations

import asyncio
import ipaddress
import secrets
import struct
import time
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from pydantic import SecretStr
from standardwebhooks import Webhook

from app.core import outbound_urls
from app.core.config import S3Settings
from app.core.resources import resources_of
from app.main import create_app
from app.upstream.image_url import ImageFetcher
from tests.support.gateway import gateway_client
from tests.support.images import data_url, image_bytes
from tests.support.settings import TEST_WEBHOOK_SECRET, make_settings
from tests.support.transports import CountingTransport
from tests.unit.callbacks.test_destinations import ADDRESS_VECTORS, METADATA_VECTORS, NON_CANONICAL

PNG_720x1280 = image_bytes(720, 1280)
GIF_720x1280 = image_bytes(720, 1280, "GIF")
MULTIPART_BOUNDARY = "x-boundary"
DEEP = 10_000
ADMIN_KEY = "vg-admin-bad-inputs-0123456789"


def deep_json(depth: int = DEEP) -> str:
    return "[" * depth + "]" * depth


def png_bomb(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of `width` x `height` zeros, built without allocating its pixels: 20000 x
    20000 is 400 megapixels in about 50 kB (in 8-bit greyscale, the issue's 388 kB file)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte, then the packed bits
    compressor = zlib.compressobj(9)
    rows_per_block = max(1, (1 << 20) // len(row))
    compressed = bytearray()
    for start in range(0, height, rows_per_block):
        compressed += compressor.compress(row * min(rows_per_block, height - start))
    compressed += compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", bytes(compressed)) + chunk(b"IEND", b"")


BOMB = png_bomb(20_000, 20_000)  # past twice Pillow's default limit: DecompressionBombError
BOMB_WARNING = png_bomb(10_000, 10_000)  # past Pillow's default limit only: DecompressionBombWarning
OVER_OUR_CAP = png_bomb(8_200, 8_200)  # within Pillow's default limit, past ours


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
    # ----- hostile inputs ---------------------------------------------------------------------------
    (
        "json body nested 10,000 deep",
        {"content": deep_json().encode(), "headers": {"content-type": "application/json"}},
        400,
        None,
    ),
    (
        "json metadata nested 10,000 deep",
        {
            "content": ('{"prompt": "p", "metadata": {"a": ' + deep_json() + "}}").encode(),
            "headers": {"content-type": "application/json"},
        },
        400,
        None,
    ),
    (
        "json nested past the depth bound",
        {
            "content": b'{"prompt": "p", "x": ' + b"[" * 65 + b"]" * 65 + b"}",
            "headers": {"content-type": "application/json"},
        },
        400,
        None,
    ),
    (
        "json duplicate keys",
        {"content": b'{"prompt": "a cat", "prompt": "a dog"}', "headers": {"content-type": "application/json"}},
        400,
        None,
    ),
    (
        "json duplicate keys inside metadata",
        {
            "content": b'{"prompt": "p", "metadata": {"a": "1", "a": "2"}}',
            "headers": {"content-type": "application/json"},
        },
        400,
        None,
    ),
    (
        "json with invalid UTF-8",
        {"content": b'{"prompt": "\xff\xfe"}', "headers": {"content-type": "application/json"}},
        400,
        None,
    ),
    (
        "json with a lone surrogate",
        {"content": b'{"prompt": "a\\ud800b"}', "headers": {"content-type": "application/json"}},
        400,
        None,
    ),
    (
        "json integer past the digit limit",
        {"content": b'{"prompt": "p", "x": ' + b"9" * 5000 + b"}", "headers": {"content-type": "application/json"}},
        400,
        None,
    ),
    ("json NaN", {"content": b'{"prompt": "p", "x": NaN}', "headers": {"content-type": "application/json"}}, 400, None),
    ("metadata key with a NUL", {"json": {"prompt": "p", "metadata": {"a\u0000b": "v"}}}, 400, "metadata"),
    ("metadata value with a NUL", {"json": {"prompt": "p", "metadata": {"a": "v\u0000"}}}, 400, "metadata.a"),
    ("multipart metadata value with a NUL", multipart(prompt="p", **{"metadata[a]": "v\u0000"}), 400, "metadata.a"),
    (
        "callback_url with a NUL",
        {"json": {"prompt": "p", "callback_url": "https://h.test/\u0000"}},
        400,
        "callback_url",
    ),
    (
        "multipart prompt of invalid UTF-8",
        {
            "content": (
                b'--x-boundary\r\nContent-Disposition: form-data; name="prompt"\r\n\r\na \xff\xfe cat'
                b"\r\n--x-boundary--\r\n"
            ),
            "headers": {"content-type": f"multipart/form-data; boundary={MULTIPART_BOUNDARY}"},
        },
        400,
        "prompt",
    ),
    (
        "multipart decompression bomb",
        multipart(prompt="p", input_reference=("a.png", BOMB, "image/png")),
        413,
        "input_reference",
    ),
    (
        "json data: URL decompression bomb",
        {"json": {"prompt": "p", "input_reference": {"image_url": data_url(BOMB)}}},
        413,
        "input_reference",
    ),
    (
        "image past Pillow's warning limit",
        multipart(prompt="p", input_reference=("a.png", BOMB_WARNING, "image/png")),
        413,
        "input_reference",
    ),
    (
        "image past our pixel cap",
        multipart(prompt="p", input_reference=("a.png", OVER_OUR_CAP, "image/png")),
        413,
        "input_reference",
    ),
]


EXPECTED_CODES = {
    **{
        case: "invalid_json"
        for case in (
            "json body nested 10,000 deep",
            "json metadata nested 10,000 deep",
            "json nested past the depth bound",
            "json duplicate keys",
            "json duplicate keys inside metadata",
            "json with invalid UTF-8",
            "json with a lone surrogate",
            "json integer past the digit limit",
            "json NaN",
        )
    },
    "multipart prompt of invalid UTF-8": "invalid_encoding",
    "multipart decompression bomb": "image_too_large",
    "json data: URL decompression bomb": "image_too_large",
    "image past Pillow's warning limit": "image_too_large",
    "image past our pixel cap": "image_too_large",
}


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
    if case in EXPECTED_CODES:
        assert error["code"] == EXPECTED_CODES[case]
    assert (await api.get("/v1/videos")).json()["data"] == []  # nothing was kept


async def test_an_oversize_body_is_413(gateway_app: FastAPI, api: httpx.AsyncClient) -> None:
    limit = resources_of(gateway_app).settings.api.max_request_bytes
    response = await api.post(
        "/v1/videos", files={"prompt": (None, "p"), "input_reference": ("a.png", b"\0" * (limit + 1), "image/png")}
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


async def test_an_oversize_chunked_body_without_length_is_413(gateway_app: FastAPI, api: httpx.AsyncClient) -> None:
    limit = resources_of(gateway_app).settings.api.max_request_bytes

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


def assert_refused(response: httpx.Response, status: int, param: str | None, code: str | None = None) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    if code is not None:
        assert error["code"] == code


JSON = {"content-type": "application/json"}
HOSTILE_JSON_BODIES = {
    "nested 10,000 deep": deep_json(),
    "prompt nested 10,000 deep": '{"prompt": ' + deep_json() + "}",
    "duplicate keys": '{"prompt": "a cat", "prompt": "a dog"}',
}


class TestHostileIdsCursorsAndBodies:
    @pytest.mark.parametrize(
        ("method", "path"),
        [
            ("GET", "/v1/videos/video_%00x"),
            ("DELETE", "/v1/videos/video_%00x"),
            ("GET", "/v1/videos/video_%00x/content"),
            ("GET", "/v1/videos/video_%00x/assets"),
            ("POST", "/v1/videos/video_%00x/remix"),
            ("GET", "/v1/videos/video_%01x"),
            ("GET", "/v1/videos/" + "v" * 65),
        ],
        ids=["retrieve", "delete", "content", "assets", "remix", "control character", "too long"],
    )
    async def test_a_video_id_of_the_wrong_shape_is_400(self, api: httpx.AsyncClient, method: str, path: str) -> None:
        body = {"prompt": "p"} if method == "POST" else None
        assert_refused(await api.request(method, path, json=body), 400, "video_id", "invalid_value")

    async def test_a_well_shaped_unknown_id_is_still_404(self, api: httpx.AsyncClient) -> None:
        assert (await api.get("/v1/videos/video_nope")).status_code == 404

    async def test_a_nul_in_the_after_cursor_is_400(self, api: httpx.AsyncClient) -> None:
        assert_refused(await api.get("/v1/videos", params={"after": "video_\x00"}), 400, "after", "invalid_value")

    @pytest.mark.parametrize("body", list(HOSTILE_JSON_BODIES.values()), ids=list(HOSTILE_JSON_BODIES))
    async def test_hostile_remix_bodies_are_400_invalid_json(self, api: httpx.AsyncClient, body: str) -> None:
        response = await api.post("/v1/videos/video_x/remix", content=body.encode(), headers=JSON)
        assert_refused(response, 400, None, "invalid_json")

    async def test_a_hostile_body_with_an_idempotency_key_is_400_too(self, api: httpx.AsyncClient) -> None:
        # The idempotency middleware fingerprints the JSON before the route parses it.
        response = await api.post(
            "/v1/videos", content=deep_json().encode(), headers={**JSON, "Idempotency-Key": "deep-1"}
        )
        assert_refused(response, 400, None, "invalid_json")


class TestCallbacksRoutes:
    @pytest.mark.parametrize("name", ["video_id", "after"])
    async def test_a_nul_in_a_delivery_log_filter_is_400(self, api: httpx.AsyncClient, name: str) -> None:
        response = await api.get("/v1/callbacks/deliveries", params={name: "video_\x00"})
        assert_refused(response, 400, name, "invalid_value")

    async def test_a_nul_in_an_endpoint_id_is_400(self, api: httpx.AsyncClient) -> None:
        assert_refused(await api.delete("/v1/callbacks/endpoints/cbe_%00"), 400, "endpoint_id", "invalid_value")

    async def test_a_well_shaped_unknown_endpoint_is_still_404(self, api: httpx.AsyncClient) -> None:
        assert (await api.delete("/v1/callbacks/endpoints/cbe_nope")).status_code == 404

    @pytest.mark.parametrize(
        "body", [deep_json(), '{"url": "https://a.test/", "url": "https://b.test/"}'], ids=["deep", "duplicate keys"]
    )
    async def test_hostile_endpoint_bodies_are_400_invalid_json(self, api: httpx.AsyncClient, body: str) -> None:
        response = await api.post("/v1/callbacks/endpoints", content=body.encode(), headers=JSON)
        assert_refused(response, 400, None, "invalid_json")


@pytest.fixture(scope="module")
async def admin_app(
    database_url: str, upstream_transport: CountingTransport, seaweedfs_s3: S3Settings
) -> AsyncIterator[FastAPI]:
    settings = make_settings(database_url).model_copy(
        update={"s3": seaweedfs_s3, "admin_api_key": SecretStr(ADMIN_KEY)}
    )
    app = create_app(settings, upstream_transport=upstream_transport)
    async with app.router.lifespan_context(app):
        yield app


@pytest.fixture
async def admin(admin_app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    async with gateway_client(admin_app, ADMIN_KEY) as client:
        yield client


class TestAdminRoutes:
    async def new_caller(self, admin: httpx.AsyncClient) -> dict[str, Any]:
        response = await admin.post("/v1/admin/callers", json={"name": f"bad-inputs-{secrets.token_hex(6)}"})
        assert response.status_code == 201, response.text
        created: dict[str, Any] = response.json()
        return created

    @pytest.mark.parametrize(
        ("body", "param"),
        [
            ({"name": "nul-label", "label": "a\x00b"}, "label"),
            ({"name": "nul\x00name"}, "name"),
        ],
        ids=["label", "name"],
    )
    async def test_a_nul_in_an_admin_body_is_400(
        self, admin: httpx.AsyncClient, body: dict[str, str], param: str
    ) -> None:
        assert_refused(await admin.post("/v1/admin/callers", json=body), 400, param)

    @pytest.mark.parametrize(
        "body", [deep_json(), '{"name": "dup-a", "name": "dup-b"}', '{"name": ' + deep_json() + "}"]
    )
    async def test_hostile_admin_json_is_400_invalid_json(self, admin: httpx.AsyncClient, body: str) -> None:
        response = await admin.post("/v1/admin/callers", content=body.encode(), headers=JSON)
        assert_refused(response, 400, None, "invalid_json")

    async def test_numbers_past_the_columns_are_400(self, admin: httpx.AsyncClient) -> None:
        created = await self.new_caller(admin)
        caller_id, key_id = created["caller"]["id"], created["key"]["id"]
        huge = 10**30
        answers = {
            "keys": await admin.post(f"/v1/admin/callers/{caller_id}/keys", json={"requests_per_minute": huge}),
            "key rate": await admin.patch(f"/v1/admin/keys/{key_id}", json={"requests_per_minute": 2**31}),
            "limits": await admin.patch(f"/v1/admin/callers/{caller_id}/limits", json={"max_concurrent_renders": huge}),
            "rpm limit": await admin.patch(f"/v1/admin/callers/{caller_id}/limits", json={"requests_per_minute": huge}),
        }
        for name, response in answers.items():
            assert response.status_code == 400, (name, response.text)
            assert response.json()["error"]["type"] == "invalid_request_error"

    async def test_a_nul_in_a_key_label_is_400(self, admin: httpx.AsyncClient) -> None:
        caller_id = (await self.new_caller(admin))["caller"]["id"]
        response = await admin.post(f"/v1/admin/callers/{caller_id}/keys", json={"label": "a\x00b"})
        assert_refused(response, 400, "label")


class TestWebhookReceiver:
    """Signed deliveries (so the body is read at all) that are hostile: 400, never 500."""

    @pytest.mark.parametrize(
        "body",
        [
            deep_json(),
            '{"type": "video.completed", "data": {"id": "v", "x": ' + deep_json() + "}}",
            '{"type": "video.completed", "data": {"id": "video_\\u0000"}}',
            '{"type": "video.\\u0000", "data": {"id": "v"}}',
            '{"type": "video.completed", "type": "video.failed", "data": {"id": "v"}}',
        ],
        ids=["deep", "deep data", "nul id", "nul type", "duplicate keys"],
    )
    async def test_hostile_signed_bodies_are_400(self, gateway_app: FastAPI, body: str) -> None:
        webhook_id = "wh_" + secrets.token_hex(8)
        now = datetime.fromtimestamp(int(time.time()), UTC)
        headers = {
            **JSON,
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(TEST_WEBHOOK_SECRET).sign(webhook_id, now, body),
        }
        async with gateway_client(gateway_app, None) as client:
            response = await client.post("/webhooks/openai", content=body.encode(), headers=headers)
        assert response.status_code == 400, response.text
        assert response.json()["error"]["code"] == "invalid_webhook"


@pytest.fixture
async def listener() -> AsyncIterator[tuple[int, list[str]]]:
    """A TCP port on 127.0.0.1 that records every connection made to it (and answers nothing)."""
    connections: list[str] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append(str(writer.get_extra_info("peername")))
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        yield port, connections


def image_url_create(url: str) -> dict[str, Any]:
    return {"prompt": "p", "input_reference": {"image_url": url}}


def https(url: str) -> str:
    return url.replace("http://", "https://", 1)


# Reused from the callback guard's own tests, in https so each refusal is about the address, not the scheme:
# every one is refused for an image URL too (nothing is allow-listed here).
REFUSED_IMAGE_URLS = [
    *[url for url, reason in ADDRESS_VECTORS if reason != "public"],
    *[https(url) for url, _allowed in METADATA_VECTORS],
    *[https(url) for url in NON_CANONICAL],
    "http://93.184.216.34/a.png",  # public, but not https
    "https://user:pass@93.184.216.34/a.png",
    "https://localhost/a.png",
    "https://metadata.google.internal/computeMetadata/v1/",
    "https://[fe80::1%25eth0]/a.png",
    "https://img.test/\x00.png",
]
# What a network library's exception text says; none of it may reach the caller.
LIBRARY_WORDS = ("errno", "ssl", "connect", "refused", "timed out", "httpx", "traceback")


class TestImageUrlDestinations:
    """Defect 2: `input_reference.image_url` must not reach our own network, nor tell the caller how it failed."""

    @pytest.mark.parametrize("url", REFUSED_IMAGE_URLS)
    async def test_a_url_the_callback_guard_would_refuse_is_400_before_any_upstream_call(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport, url: str
    ) -> None:
        before = upstream_transport.count("POST", "/v1/videos")
        response = await api.post("/v1/videos", json=image_url_create(url))
        assert_refused(response, 400, "input_reference.image_url", "invalid_image_url")
        assert upstream_transport.count("POST", "/v1/videos") == before
        assert (await api.get("/v1/videos")).json()["data"] == []

    @pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "[::ffff:127.0.0.1]"])
    async def test_no_connection_is_made_to_a_loopback_address(
        self, api: httpx.AsyncClient, listener: tuple[int, list[str]], host: str
    ) -> None:
        port, connections = listener
        response = await api.post("/v1/videos", json=image_url_create(f"https://{host}:{port}/a.png"))
        await asyncio.sleep(0.05)  # a connection attempt, had there been one, is accepted by now
        assert connections == []
        assert_refused(response, 400, "input_reference.image_url", "invalid_image_url")
        message = response.json()["error"]["message"].lower()
        assert not any(word in message for word in LIBRARY_WORDS), message

    async def test_a_public_url_is_fetched_by_the_gateway_at_the_checked_address_and_sent_as_bytes(
        self,
        gateway_app: FastAPI,
        api: httpx.AsyncClient,
        upstream_transport: CountingTransport,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        seen: list[httpx.Request] = []

        def serve(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return httpx.Response(200, stream=httpx.ByteStream(PNG_720x1280), headers={"content-type": "image/png"})

        monkeypatch.setattr(outbound_urls, "resolve", lambda host: [ipaddress.ip_address("93.184.216.34")])
        service = resources_of(gateway_app).video_service
        monkeypatch.setattr(
            service, "images", ImageFetcher(service.images.settings, transport=httpx.MockTransport(serve))
        )
        before = upstream_transport.count("POST", "/v1/videos")
        response = await api.post("/v1/videos", json=image_url_create("https://img.test/still.png?v=1"))
        assert response.status_code == 200, response.text
        assert [str(request.url) for request in seen] == ["https://93.184.216.34/still.png?v=1"]
        assert seen[0].headers["host"] == "img.test"
        assert seen[0].extensions["sni_hostname"] == "img.test"
        assert upstream_transport.count("POST", "/v1/videos") == before + 1
