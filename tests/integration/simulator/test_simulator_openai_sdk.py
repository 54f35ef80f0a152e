"""The stock openai SDK against the simulator on a real socket: the wire format it sends must be accepted."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import openai
import pytest
from PIL import Image

Factory = Callable[..., Any]


@pytest.fixture
def sdk_for() -> Callable[[Any], openai.AsyncOpenAI]:
    def build(client: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=f"{client.base_url}/v1".replace("//v1", "/v1"),
            api_key=client.headers["authorization"].removeprefix("Bearer "),
            max_retries=0,
        )

    return build


class TestOpenAISdk:
    async def test_create_and_poll_download_remix_list_delete(
        self, real_sim: Factory, sdk_for: Callable[[Any], openai.AsyncOpenAI]
    ) -> None:
        async with real_sim() as client, sdk_for(client) as sdk:
            video = await sdk.videos.create_and_poll(
                prompt="A lighthouse at dusk", size="1280x720", seconds="4", poll_interval_ms=50
            )
            assert (video.status, video.size, video.seconds, video.progress) == ("completed", "1280x720", "4", 100)
            content = await sdk.videos.download_content(video.id, variant="thumbnail")
            with Image.open(io.BytesIO(content.content)) as image:
                assert image.format == "WEBP" and image.size == (1280, 720)
            remix = await sdk.videos.remix(video.id, prompt="A lighthouse at dawn")
            assert remix.remixed_from_video_id == video.id
            page = await sdk.videos.list(limit=1, order="asc")
            assert [v.id for v in page.data] == [video.id] and page.has_more is True
            deleted = await sdk.videos.delete(remix.id)
            assert deleted.deleted is True and deleted.id == remix.id
            with pytest.raises(openai.NotFoundError):
                await sdk.videos.retrieve(remix.id)

    async def test_sdk_file_upload_reference_is_checked(
        self, real_sim: Factory, sdk_for: Callable[[Any], openai.AsyncOpenAI]
    ) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (720, 1280), (0, 90, 200)).save(buffer, format="JPEG")
        async with real_sim(queue_seconds=60) as client, sdk_for(client) as sdk:
            # Raw bytes go up as filename "upload", application/octet-stream: the type is sniffed.
            video = await sdk.videos.create(prompt="x", input_reference=buffer.getvalue())
            assert video.status == "queued"
            with pytest.raises(openai.BadRequestError) as caught:
                await sdk.videos.create(prompt="x", size="1280x720", input_reference=buffer.getvalue())
            assert caught.value.param == "input_reference"
            with pytest.raises(openai.AuthenticationError):
                async with openai.AsyncOpenAI(base_url=sdk.base_url, api_key="wrong", max_retries=0) as stranger:
                    await stranger.videos.list()
