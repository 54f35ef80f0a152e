"""The stock `openai` SDK's `edit`, `extend`, `create_character` and `get_character` against the running
gateway (real HTTP; API, worker and simulators as processes), with only `base_url` changed.

Each edit and extension is a video like any other: polled to completion, archived (MP4, thumbnail and
spritesheet, each with its SHA-256, equal to what the SDK downloads and to what sits in S3), and owned by its
caller. By id, the SDK is called with `video=openai.omit, extra_body={"video": {"id": ...}}` (the SDK's own
`video={"id": ...}` form raises inside the SDK before anything is sent), which arrives as `video[id]`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.e2e.helpers import asset_rows, object_digest, retrieve_video, wait_for
from tests.e2e.test_live_providers_sdk import RENDERS
from tests.e2e.test_openai_sdk import mp4_facts
from tests.support.stack import Stack
from tests.support.videos import mp4_bytes

pytestmark = pytest.mark.e2e

FILES = {"video": "video.mp4", "thumbnail": "thumbnail.webp", "spritesheet": "spritesheet.jpg"}


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0)


def by_id(video_id: str) -> dict[str, Any]:
    return {"video": openai.omit, "extra_body": {"video": {"id": video_id}}}


def archived_like_any_video(stack: Stack, client: openai.OpenAI, video_id: str, key: str, into: Path) -> Path:
    """Waits for all three variants archived; checks each download against its record and S3; the MP4's path."""

    def all_archived() -> dict[str, Any] | None:
        archive: dict[str, Any] = retrieve_video(stack, video_id, key=key)["archive"]
        done = len(archive) == 3 and {entry["state"] for entry in archive.values()} == {"archived"}
        return archive if done else None

    archive = wait_for(all_archived, timeout=90, what=f"{video_id} archived")
    into.mkdir(parents=True, exist_ok=True)
    for variant, name in FILES.items():
        client.videos.download_content(video_id, variant=variant).write_to_file(into / name)  # type: ignore[arg-type]
        body = (into / name).read_bytes()
        assert (hashlib.sha256(body).hexdigest(), len(body)) == (archive[variant]["sha256"], archive[variant]["bytes"])
        [row] = asset_rows(stack, video_id, variant)
        assert object_digest(stack, row["s3_key"]) == (row["sha256"], row["bytes"])
    return into / "video.mp4"


class TestEditAndExtend:
    def test_edit_by_id_then_extend_the_edit_each_archived_with_its_provenance(
        self, stack: Stack, tmp_path: Path
    ) -> None:
        key = stack.new_caller_key()
        with sdk(stack, key) as client:
            source = client.videos.create_and_poll(
                prompt="a kite over a beach", seconds="4", size="1280x720", poll_interval_ms=200
            )
            assert source.status == "completed"

            edit = client.videos.edit(prompt="the same, at dusk", **by_id(source.id))
            assert edit.id != source.id and edit.remixed_from_video_id is None
            edit = client.videos.poll(edit.id, poll_interval_ms=200)
            assert (edit.status, edit.seconds, edit.size) == ("completed", "4", "1280x720")
            edited_mp4 = archived_like_any_video(stack, client, edit.id, key, tmp_path / "edit")
            width, height, duration, codec = mp4_facts(edited_mp4)
            assert (width, height, codec) == (1280, 720, "h264")
            assert duration == pytest.approx(4.0, abs=0.5)

            extension = client.videos.extend(prompt="the kite flies off", seconds="8", **by_id(edit.id))
            assert extension.seconds == "12"  # the stitched total
            extension = client.videos.poll(extension.id, poll_interval_ms=200)
            assert extension.status == "completed", extension.error
            extended_mp4 = archived_like_any_video(stack, client, extension.id, key, tmp_path / "extension")
            assert mp4_facts(extended_mp4)[2] == pytest.approx(12.0, abs=0.5)

        provenance = retrieve_video(stack, extension.id, key=key)
        assert (provenance["origin"], provenance["source_video_id"]) == ("extension", edit.id)
        assert retrieve_video(stack, edit.id, key=key)["source_video_id"] == source.id

    def test_an_uploaded_mp4_is_edited_and_extended(self, stack: Stack, tmp_path: Path) -> None:
        key = stack.new_caller_key()
        clip = ("clip.mp4", mp4_bytes(width=640, height=360, seconds=2.0), "video/mp4")
        with sdk(stack, key) as client:
            extension = client.videos.extend(prompt="and it rains", seconds="4", video=clip)
            assert (extension.size, extension.seconds) == ("640x360", "6")
            extension = client.videos.poll(extension.id, poll_interval_ms=200)
            assert extension.status == "completed", extension.error
            mp4 = archived_like_any_video(stack, client, extension.id, key, tmp_path)
            assert mp4_facts(mp4)[2] == pytest.approx(6.0, abs=0.5)

    def test_another_callers_video_is_not_found_and_an_unfinished_one_not_ready(self, stack: Stack) -> None:
        with sdk(stack, stack.new_caller_key()) as owner, sdk(stack, stack.new_caller_key()) as other:
            source = owner.videos.create_and_poll(prompt="mine", poll_interval_ms=200)
            with pytest.raises(openai.NotFoundError):
                other.videos.edit(prompt="theirs now", **by_id(source.id))
            with pytest.raises(openai.NotFoundError):
                other.videos.extend(prompt="theirs now", seconds="4", **by_id(source.id))
            pending = owner.videos.create(prompt="not yet")
            with pytest.raises(openai.BadRequestError) as caught:
                owner.videos.edit(prompt="too soon", **by_id(pending.id))
            assert caught.value.code == "video_not_ready"

    def test_a_provider_that_cannot_edit_is_400_unsupported_by_provider(self, stack: Stack) -> None:
        seedance = next(render for render in RENDERS if render.kind == "seedance")
        with sdk(stack, stack.new_caller_key()) as client:
            source = client.videos.create_and_poll(
                model=seedance.model,
                prompt="a lighthouse",
                seconds=seedance.seconds,  # type: ignore[arg-type]
                size=seedance.size,  # type: ignore[arg-type]
                poll_interval_ms=200,
            )
            assert source.status == "completed"
            calls: tuple[Callable[[], object], ...] = (
                lambda: client.videos.edit(prompt="x", **by_id(source.id)),
                lambda: client.videos.extend(prompt="x", seconds="4", **by_id(source.id)),
            )
            for call in calls:
                with pytest.raises(openai.BadRequestError) as caught:
                    call()
                assert caught.value.code == "unsupported_by_provider"


class TestCharacters:
    def test_create_and_get_a_character_which_only_its_caller_sees(self, stack: Stack) -> None:
        clip = ("mossy.mp4", mp4_bytes(seconds=1.0), "video/mp4")
        with sdk(stack, stack.new_caller_key()) as owner, sdk(stack, stack.new_caller_key()) as other:
            made = owner.videos.create_character(name="Mossy", video=clip)
            assert made.id is not None and made.id.startswith("char_")
            assert made.name == "Mossy"
            fetched = owner.videos.get_character(made.id)
            assert (fetched.id, fetched.name, fetched.created_at) == (made.id, made.name, made.created_at)
            with pytest.raises(openai.NotFoundError):
                other.videos.get_character(made.id)

    def test_a_clip_that_is_not_an_mp4_is_refused_before_upstream(self, stack: Stack) -> None:
        with sdk(stack, stack.new_caller_key()) as client, pytest.raises(openai.APIStatusError) as caught:
            client.videos.create_character(name="Nope", video=("a.mp4", b"definitely not a video", "video/mp4"))
        assert caught.value.status_code == 415
