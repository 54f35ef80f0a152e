"""The stock `openai` SDK against the running gateway (real HTTP), the simulator as upstream."""

from __future__ import annotations

from pathlib import Path

import av
import openai
import pytest
from PIL import Image

from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


def sdk(stack: Stack, key: str | None = None) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=key or stack.new_caller_key(), max_retries=0)


def mp4_facts(path: Path) -> tuple[int, int, float, str]:
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = sum(1 for _ in container.decode(stream))
        rate = float(stream.average_rate or stream.guessed_rate or 1)
        return stream.codec_context.width, stream.codec_context.height, frames / rate, stream.codec_context.name


class TestRenderAndDownload:
    def test_create_and_poll_then_download_every_variant(self, stack: Stack, downloads: Path) -> None:
        with sdk(stack) as client:
            video = client.videos.create_and_poll(
                prompt="a paper boat on a pond", seconds="4", size="1280x720", poll_interval_ms=200
            )
            assert video.status == "completed"
            assert video.id.startswith("video_")
            assert (video.size, video.seconds, video.progress) == ("1280x720", "4", 100)

            mp4 = downloads / "video.mp4"
            client.videos.download_content(video.id, variant="video").write_to_file(mp4)
            width, height, duration, codec = mp4_facts(mp4)
            assert (width, height, codec) == (1280, 720, "h264")
            assert duration == pytest.approx(4.0, abs=0.3)

            thumbnail = downloads / "thumbnail.webp"
            client.videos.download_content(video.id, variant="thumbnail").write_to_file(thumbnail)
            with Image.open(thumbnail) as image:
                assert image.format == "WEBP"

            spritesheet = downloads / "spritesheet.jpg"
            client.videos.download_content(video.id, variant="spritesheet").write_to_file(spritesheet)
            with Image.open(spritesheet) as image:
                assert image.format == "JPEG"

    def test_streaming_download_matches_the_buffered_one(self, stack: Stack, downloads: Path) -> None:
        with sdk(stack) as client:
            video = client.videos.create_and_poll(prompt="streamed", poll_interval_ms=200)
            buffered = client.videos.download_content(video.id).content
            with client.videos.with_streaming_response.download_content(video.id) as response:
                streamed = b"".join(response.iter_bytes())
            assert streamed == buffered
            assert streamed[4:8] == b"ftyp"

    def test_content_before_completion_is_not_found(self, stack: Stack) -> None:
        with sdk(stack) as client:
            video = client.videos.create(prompt="not yet")
            with pytest.raises(openai.NotFoundError):
                client.videos.download_content(video.id)


class TestListDeleteRemix:
    def test_list_pages_through_25_videos_in_both_orders(self, stack: Stack) -> None:
        with sdk(stack) as client:
            created = [client.videos.create(prompt=f"clip {n}").id for n in range(25)]
            newest_first = [video.id for video in client.videos.list(limit=10, order="desc")]
            oldest_first = [video.id for video in client.videos.list(limit=7, order="asc")]
            assert newest_first == created[::-1]
            assert oldest_first == created
            first_page = client.videos.list(limit=10)
            assert len(first_page.data) == 10
            assert first_page.has_more is True

    def test_delete_then_retrieve_is_not_found(self, stack: Stack) -> None:
        with sdk(stack) as client:
            video = client.videos.create(prompt="short lived")
            deleted = client.videos.delete(video.id)
            assert (deleted.id, deleted.deleted, deleted.object) == (video.id, True, "video.deleted")
            with pytest.raises(openai.NotFoundError):
                client.videos.retrieve(video.id)

    def test_remix_a_completed_video(self, stack: Stack) -> None:
        with sdk(stack) as client:
            source = client.videos.create_and_poll(prompt="day scene", poll_interval_ms=200)
            remix = client.videos.remix(source.id, prompt="night scene")
            assert remix.remixed_from_video_id == source.id
            finished = client.videos.poll(remix.id, poll_interval_ms=200)
            assert finished.status == "completed"
            assert finished.prompt == "night scene"

    def test_another_callers_video_is_invisible(self, stack: Stack) -> None:
        with sdk(stack) as owner, sdk(stack) as stranger:
            video = owner.videos.create_and_poll(prompt="mine", poll_interval_ms=200)
            for attempt in (
                lambda: stranger.videos.retrieve(video.id),
                lambda: stranger.videos.download_content(video.id),
                lambda: stranger.videos.delete(video.id),
                lambda: stranger.videos.remix(video.id, prompt="theirs"),
            ):
                with pytest.raises(openai.NotFoundError):
                    attempt()
            assert video.id not in [v.id for v in stranger.videos.list()]

    def test_wrong_key_is_an_authentication_error(self, stack: Stack) -> None:
        with sdk(stack, key="vg_not-a-key") as client, pytest.raises(openai.AuthenticationError):
            client.videos.list()
