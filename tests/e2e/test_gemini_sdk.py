"""The stock `openai` SDK through the gateway to Veo on the Gemini API (its simulator), over real HTTP.

The issue's "done means": `create_and_poll(model="veo-3.1-generate-preview", seconds="8", size="1280x720")`
returns a completed video; `download_content` gives its MP4 and the derived thumbnail and spritesheet, all
three archived in S3 with SHA-256; a blocked render is `failed` with `moderation_blocked`; `seconds="12"` is
a 400 naming `seconds`. Plus the archive rows for this kind on real processes: a SIGKILLed worker
mid-download, and every webhook lost.
"""

from __future__ import annotations

import hashlib
import signal
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.e2e.helpers import (
    MIB,
    asset_rows,
    downloading_on,
    object_digest,
    retrieve_video,
    sql,
    upstream_id,
    wait_exit,
    wait_for,
)
from tests.e2e.test_edits_extensions_sdk import by_id
from tests.e2e.test_openai_sdk import mp4_facts
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

VEO = "veo-3.1-generate-preview"
StackFactory = Callable[..., Any]


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0)


def all_archived(stack: Stack, video_id: str, key: str) -> dict[str, Any] | None:
    archive: dict[str, Any] = retrieve_video(stack, video_id, key=key)["archive"]
    states = {entry["state"] for entry in archive.values()}
    return archive if len(archive) == 3 and states == {"archived"} else None


def archived_in_database(stack: Stack, video_id: str) -> bool:
    rows = sql(stack, "SELECT state FROM assets WHERE video_id = $1", video_id)
    return len(rows) == 3 and {row["state"] for row in rows} == {"archived"}


def gemini_mp4_digest(stack: Stack, video_id: str) -> tuple[str, int]:
    """(sha256, size) of the file the Gemini simulator serves for the video, through its key and redirect."""
    with stack.gemini() as gemini:
        operation = gemini.get(f"/v1beta/{upstream_id(stack, video_id)}").json()
        uri = operation["response"]["generateVideoResponse"]["generatedSamples"][0]["video"]["uri"]
        body = gemini.get(uri, follow_redirects=True, timeout=60).content
    return hashlib.sha256(body).hexdigest(), len(body)


def set_gemini_faults(stack: Stack, **knobs: object) -> None:
    with stack.gemini() as gemini:
        gemini.patch("/_sim/faults", json=knobs).raise_for_status()


class TestDoneMeans:
    def test_create_and_poll_then_every_variant_from_the_archive(self, stack: Stack, downloads: Path) -> None:
        key = stack.new_caller_key()
        with sdk(stack, key) as client:
            video = client.videos.create_and_poll(
                model=VEO, prompt="a lighthouse in a storm", seconds="8", size="1280x720", poll_interval_ms=200
            )
            assert video.status == "completed", video.error
            assert (video.model, video.seconds, video.size, video.progress) == (VEO, "8", "1280x720", 100)

            archive = wait_for(lambda: all_archived(stack, video.id, key), timeout=60, what="all three archived")
            files = {"video": "video.mp4", "thumbnail": "thumbnail.webp", "spritesheet": "spritesheet.jpg"}
            for variant, name in files.items():
                client.videos.download_content(video.id, variant=variant).write_to_file(downloads / name)  # type: ignore[arg-type]
                body = (downloads / name).read_bytes()
                entry = archive[variant]
                assert (hashlib.sha256(body).hexdigest(), len(body)) == (entry["sha256"], entry["bytes"])

        width, height, duration, codec = mp4_facts(downloads / "video.mp4")
        assert (width, height, codec) == (1280, 720, "h264")
        assert duration == pytest.approx(8.0, abs=0.5)
        assert archive["video"]["sha256"] == gemini_mp4_digest(stack, video.id)[0]
        with Image.open(downloads / "thumbnail.webp") as thumbnail:
            assert (thumbnail.format, thumbnail.size) == ("WEBP", (1280, 720))
        with Image.open(downloads / "spritesheet.jpg") as spritesheet:
            assert spritesheet.format == "JPEG"
        # The S3 objects themselves hash to what was recorded.
        for variant in files:
            [row] = asset_rows(stack, video.id, variant)
            assert object_digest(stack, row["s3_key"]) == (row["sha256"], row["bytes"])
        # The simulator's signed video.generated reached the veo profile's receiver.
        events = sql(stack, "SELECT outcome FROM webhook_events WHERE upstream_profile = 'veo'")
        assert events and {event["outcome"] for event in events} <= {"enqueued", "ignored"}

    def test_a_blocked_render_fails_with_moderation_blocked(self, stack: Stack) -> None:
        with sdk(stack, stack.new_caller_key()) as client:
            video = client.videos.create_and_poll(
                model=VEO, prompt="something forbidden", seconds="4", size="720x1280", poll_interval_ms=200
            )
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "moderation_blocked"

    def test_twelve_seconds_is_a_400_naming_seconds(self, stack: Stack) -> None:
        with sdk(stack, stack.new_caller_key()) as client, pytest.raises(openai.BadRequestError) as caught:
            client.videos.create(model=VEO, prompt="too long", seconds="12", size="1280x720")
        body: Any = caught.value.body
        assert body["param"] == "seconds"
        assert "'4', '6', '8'" in body["message"]

    def test_remix_is_a_400_unsupported_by_provider(self, stack: Stack) -> None:
        with sdk(stack, stack.new_caller_key()) as client:
            video = client.videos.create_and_poll(model=VEO, prompt="a kite", poll_interval_ms=200)
            with pytest.raises(openai.BadRequestError) as caught:
                client.videos.remix(video.id, prompt="a red kite")
        body: Any = caught.value.body
        assert body["code"] == "unsupported_by_provider"


class TestExtensions:
    """Veo 3.1 extends one of its own 720p renders by 7 s: the result is one stitched video, archived."""

    def test_extend_a_veo_render_by_seven_seconds_then_every_variant_from_the_archive(
        self, stack: Stack, downloads: Path
    ) -> None:
        key = stack.new_caller_key()
        with sdk(stack, key) as client:
            source = client.videos.create_and_poll(
                model=VEO, prompt="a lighthouse at dawn", seconds="8", size="1280x720", poll_interval_ms=200
            )
            assert source.status == "completed", source.error
            with pytest.raises(openai.BadRequestError) as caught:
                client.videos.extend(prompt="longer", seconds="8", **by_id(source.id))
            body: Any = caught.value.body
            assert (body["param"], body["code"]) == ("seconds", "invalid_value") and "'7'" in body["message"]
            with pytest.raises(openai.BadRequestError) as caught:
                client.videos.edit(prompt="at night", **by_id(source.id))
            assert caught.value.code == "unsupported_by_provider"

            extension = client.videos.extend(prompt="the beam sweeps the sea", seconds="7", **by_id(source.id))  # type: ignore[arg-type]
            assert (extension.model, extension.seconds, extension.size) == (VEO, "15", "1280x720")
            extension = client.videos.poll(extension.id, poll_interval_ms=200)
            assert extension.status == "completed", extension.error
            archive = wait_for(lambda: all_archived(stack, extension.id, key), timeout=90, what="all three archived")
            client.videos.download_content(extension.id).write_to_file(downloads / "extended.mp4")
        body_bytes = (downloads / "extended.mp4").read_bytes()
        assert (hashlib.sha256(body_bytes).hexdigest(), len(body_bytes)) == (
            archive["video"]["sha256"],
            archive["video"]["bytes"],
        )
        assert archive["video"]["sha256"] == gemini_mp4_digest(stack, extension.id)[0]
        width, height, duration, _codec = mp4_facts(downloads / "extended.mp4")
        assert (width, height) == (1280, 720)
        assert duration == pytest.approx(15.0, abs=0.5)
        provenance = retrieve_video(stack, extension.id, key=key)
        assert (provenance["origin"], provenance["source_video_id"]) == ("extension", source.id)


class TestArchiveFaults:
    """docs/reliability.md rows 37 and the lost-webhook rows, for the gemini kind on real processes."""

    def test_a_killed_download_is_reclaimed_and_lands_once(self, private_stack: StackFactory) -> None:
        with private_stack(gemini=True) as stack:
            set_gemini_faults(stack, synthetic_asset_bytes=120 * MIB, content_bytes_per_second=20_000_000)
            key = stack.new_caller_key()
            doomed = stack.start_worker("doomed")
            with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}) as api:
                created = api.post("/v1/videos", json={"prompt": "a big one", "model": VEO, "size": "1280x720"})
            assert created.status_code == 200, created.text
            video_id = created.json()["id"]
            wait_for(lambda: downloading_on(stack, video_id, doomed.pid), timeout=60, what="the download to start")
            doomed.signal(signal.SIGKILL)
            assert wait_exit(doomed, timeout=5) == -signal.SIGKILL

            set_gemini_faults(stack, content_bytes_per_second=0)
            stack.start_worker("rescuer")
            wait_for(
                lambda: (rows := asset_rows(stack, video_id)) and rows[0]["state"] == "archived" and rows[0],
                timeout=90,
                what="the MP4 to be archived by the rescuer",
            )
            [row] = asset_rows(stack, video_id)
            expected = gemini_mp4_digest(stack, video_id)
            assert (row["sha256"], row["bytes"]) == expected
            assert row["bytes"] == 120 * MIB
            assert object_digest(stack, row["s3_key"]) == expected

    def test_every_webhook_lost_the_reconciler_still_archives_all_three(self, private_stack: StackFactory) -> None:
        with private_stack(gemini=True, workers=1) as stack:
            set_gemini_faults(stack, webhook_drop_probability=1.0)
            key = stack.new_caller_key()
            with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}) as api:
                ids = [
                    api.post("/v1/videos", json={"prompt": f"clip {n}", "model": VEO, "size": "720x1280"}).json()["id"]
                    for n in range(3)
                ]
            # Nobody polls through the API (the database is read directly) and no webhook arrives: only the
            # reconciler can find them.
            for video_id in ids:
                wait_for(partial(archived_in_database, stack, video_id), timeout=90, what=f"{video_id} archived")
            assert sql(stack, "SELECT count(*) AS n FROM webhook_events")[0]["n"] == 0
