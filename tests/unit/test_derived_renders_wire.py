"""What an OpenAI-contract upstream is sent for an edit, an extension and a character, and which models and
sources each kind of profile can derive from (no network: scripted transports)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

from app.core.config import UpstreamSettings
from app.core.errors import InvalidRequest, UpstreamError
from app.upstream.capabilities import ModelCapabilities, check_characters, check_edit, check_extend
from app.upstream.client import OPENAI_CAPABILITIES
from app.upstream.router import build_adapter
from app.upstream.schemas import CharacterCommand, EditCommand, ExtendCommand, SourceVideo, VideoUpload
from tests.unit.test_upstream_client import answer, client_with, scripted

UPLOAD = VideoUpload(
    data=b"\0\0\0\x18ftypisom-mp4-bytes", filename="clip.mp4", width=320, height=180, duration_seconds=2.0
)
BY_ID = SourceVideo(upstream_id="video_up9", size="1280x720", seconds="4")
BY_UPLOAD = SourceVideo(upload=UPLOAD, size="320x180", seconds="2")


class TestOpenAIWire:
    async def test_an_edit_of_upstreams_own_render_is_json_naming_its_id(self) -> None:
        transport, seen = scripted(answer(200))
        client = client_with(transport)
        await client.edit_video(EditCommand(prompt="snow", model="sora-2", source=BY_ID))
        await client.aclose()
        assert seen[0].url.path == "/v1/videos/edits"
        assert seen[0].headers["content-type"] == "application/json"
        assert json.loads(seen[0].content) == {"prompt": "snow", "video": {"id": "video_up9"}}

    async def test_an_extension_of_an_upload_is_multipart_with_the_file_model_and_seconds(self) -> None:
        transport, seen = scripted(answer(200))
        client = client_with(transport)
        await client.extend_video(ExtendCommand(prompt="fly", model="sora-2-pro", seconds="8", source=BY_UPLOAD))
        await client.aclose()
        request = seen[0]
        assert request.url.path == "/v1/videos/extensions"
        assert request.headers["content-type"].startswith("multipart/form-data")
        body = request.content
        for field in (b'name="prompt"\r\n\r\nfly', b'name="model"\r\n\r\nsora-2-pro', b'name="seconds"\r\n\r\n8'):
            assert field in body
        assert b'name="video"; filename="clip.mp4"' in body and UPLOAD.data in body

    async def test_an_extension_is_a_paid_call_never_repeated_after_a_5xx(self) -> None:
        transport, seen = scripted(answer(500, {"error": {"message": "boom"}}), answer(200))
        client = client_with(transport)
        with pytest.raises(UpstreamError):
            await client.extend_video(ExtendCommand(prompt="fly", model="sora-2", seconds="4", source=BY_ID))
        await client.aclose()
        assert len(seen) == 1

    async def test_a_character_is_multipart_and_its_answer_read(self) -> None:
        transport, seen = scripted(answer(200, {"id": "char_up1", "name": "Mossy", "created_at": 1_700_000_000}))
        client = client_with(transport)
        made = await client.create_character(CharacterCommand(name="Mossy", video=UPLOAD))
        await client.aclose()
        assert (made.id, made.name, made.created_at) == ("char_up1", "Mossy", 1_700_000_000)
        assert b'name="name"\r\n\r\nMossy' in seen[0].content
        assert b'name="video"; filename="clip.mp4"' in seen[0].content

    async def test_a_character_answered_without_an_id_is_a_bad_response_not_retried(self) -> None:
        transport, seen = scripted(answer(200, {"name": "Mossy", "created_at": 1}))
        client = client_with(transport)
        with pytest.raises(UpstreamError) as caught:
            await client.create_character(CharacterCommand(name="Mossy", video=UPLOAD))
        await client.aclose()
        assert caught.value.code == "upstream_bad_response"
        assert caught.value.headers == {"x-should-retry": "false"}
        assert len(seen) == 1


class TestCapabilities:
    def test_the_contract_edits_and_extends_renders_and_uploads(self) -> None:
        check_edit("sora-2", OPENAI_CAPABILITIES, BY_ID)
        check_edit("sora-2", OPENAI_CAPABILITIES, BY_UPLOAD)
        for seconds in ("4", "8", "12", "16", "20"):
            check_extend("sora-2", OPENAI_CAPABILITIES, seconds=seconds, source=BY_UPLOAD)
        check_characters("sora-2", OPENAI_CAPABILITIES)

    @pytest.mark.parametrize("seconds", ["0", "5", "24", "7"])
    def test_the_contract_refuses_other_extension_lengths_naming_seconds(self, seconds: str) -> None:
        with pytest.raises(InvalidRequest) as caught:
            check_extend("sora-2", OPENAI_CAPABILITIES, seconds=seconds, source=BY_ID)
        assert (caught.value.param, caught.value.code) == ("seconds", "invalid_value")

    def test_a_provider_that_only_renders_from_prompts_refuses_each_with_unsupported_by_provider(self) -> None:
        plain = ModelCapabilities(provider="Someone", seconds=("5",), sizes=("1280x720",))
        refusals: tuple[Callable[[], object], ...] = (
            lambda: check_edit("m", plain, BY_ID),
            lambda: check_extend("m", plain, seconds="5", source=BY_ID),
            lambda: check_characters("m", plain),
        )
        for refuse in refusals:
            with pytest.raises(InvalidRequest) as caught:
                refuse()
            assert caught.value.code == "unsupported_by_provider"
            assert "Someone" in caught.value.message

    def test_own_renders_only_refuses_an_upload(self) -> None:
        own_only = ModelCapabilities(provider="P", seconds=("8",), sizes=("1280x720",), extend_seconds=("7",))
        check_extend("m", own_only, seconds="7", source=BY_ID)
        with pytest.raises(InvalidRequest) as caught:
            check_extend("m", own_only, seconds="7", source=BY_UPLOAD)
        assert caught.value.code == "unsupported_by_provider"

    def test_extend_sizes_bound_the_source(self) -> None:
        small_only = ModelCapabilities(
            provider="P", seconds=("8",), sizes=("1280x720",), extend_seconds=("7",), extend_sizes=("720x1280",)
        )
        with pytest.raises(InvalidRequest) as caught:
            check_extend("m", small_only, seconds="7", source=BY_ID)
        assert "'1280x720'" in caught.value.message


@pytest.mark.parametrize("kind", ["seedance", "fal", "replicate"])
async def test_live_kinds_that_cannot_derive_answer_400_if_called_anyway(kind: str) -> None:
    settings = UpstreamSettings(kind=kind, base_url="http://upstream.test", api_key="k")
    adapter = build_adapter(
        settings, profile="p", transport=httpx.MockTransport(lambda r: httpx.Response(500)), allow_http=True
    )
    try:
        with pytest.raises(InvalidRequest) as caught:
            await adapter.extend_video(ExtendCommand(prompt="x", model="m", seconds="4", source=BY_ID))
        assert caught.value.code == "unsupported_by_provider"
    finally:
        await adapter.aclose()
