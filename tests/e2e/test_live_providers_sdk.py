"""The stock `openai` SDK through the gateway to each further live provider's simulator, over real HTTP.

The suite's stack runs the Seedance, fal and Replicate simulators (separate processes, each written from its
provider's documented contract) behind profiles named after their kinds, beside the API and a worker. For
each: `create_and_poll` completes; every variant (the MP4, and the thumbnail and spritesheet the archive
derives from it) is downloaded through the SDK and equals what was archived and what sits in S3, byte for
byte (the integration tests compare the MP4 with the simulator's file); the provider's own webhook
(unsigned for Seedance, Ed25519 for fal, Standard Webhooks for Replicate) reached its receiver; a moderation
refusal is `failed` with `moderation_blocked`; a value the model cannot take is a 400 naming the parameter,
before any call; with every webhook lost, the reconciler alone archives all three variants; a file the
provider deleted before the worker could fetch it is `expired` with the reason, promptly, not retried for ever.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image

from tests.e2e.helpers import asset_rows, object_digest, retrieve_video, sql, wait_for
from tests.e2e.test_openai_sdk import mp4_facts
from tests.support.settings import SIMULATOR_KEY
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Render:
    kind: str
    model: str
    seconds: str
    size: str
    # A value this model cannot take, and the parameter the 400 must name.
    refused: dict[str, str]
    refused_param: str


RENDERS = [
    Render("seedance", "seedance-1-0-pro-250528", "4", "864x480", {"size": "1280x720"}, "size"),
    Render("replicate", "wan-video/wan-2.2-t2v-fast", "5", "832x480", {"seconds": "8"}, "seconds"),
    Render("fal", "fal-ai/bytedance/seedance/v1/pro/text-to-video", "5", "1280x720", {"seconds": "7"}, "seconds"),
]
KINDS = tuple(render.kind for render in RENDERS)


def sdk(stack: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{stack.api_url}/v1", api_key=key, max_retries=0)


def all_archived(stack: Stack, video_id: str, key: str) -> dict[str, Any] | None:
    archive: dict[str, Any] = retrieve_video(stack, video_id, key=key)["archive"]
    states = {entry["state"] for entry in archive.values()}
    return archive if len(archive) == 3 and states == {"archived"} else None


def simulator_creates(stack: Stack, kind: str) -> int:
    with httpx.Client(base_url=stack.live_urls[kind], headers=auth_headers(kind)) as client:
        count: int = client.get("/_sim/stats").json()["create_requests"]
    return count


def auth_headers(kind: str) -> dict[str, str]:
    return {"authorization": f"Key {SIMULATOR_KEY}" if kind == "fal" else f"Bearer {SIMULATOR_KEY}"}


@pytest.mark.parametrize("render", RENDERS, ids=KINDS)
class TestEachLiveProvider:
    def test_create_and_poll_then_every_variant_from_the_archive(
        self, stack: Stack, render: Render, tmp_path: Path
    ) -> None:
        key = stack.new_caller_key()
        with sdk(stack, key) as client:
            video = client.videos.create_and_poll(
                model=render.model,
                prompt=f"a paper boat on a {render.kind} river",
                seconds=render.seconds,  # type: ignore[arg-type]
                size=render.size,  # type: ignore[arg-type]
                poll_interval_ms=200,
            )
            assert video.status == "completed", video.error
            assert (video.model, video.seconds, video.size) == (render.model, render.seconds, render.size)

            archive = wait_for(lambda: all_archived(stack, video.id, key), timeout=90, what="all three archived")
            files = {"video": "video.mp4", "thumbnail": "thumbnail.webp", "spritesheet": "spritesheet.jpg"}
            for variant, name in files.items():
                client.videos.download_content(video.id, variant=variant).write_to_file(tmp_path / name)  # type: ignore[arg-type]
                body = (tmp_path / name).read_bytes()
                assert (hashlib.sha256(body).hexdigest(), len(body)) == (
                    archive[variant]["sha256"],
                    archive[variant]["bytes"],
                )
        width, height, _duration, codec = mp4_facts(tmp_path / "video.mp4")
        assert (f"{width}x{height}", codec) == (render.size, "h264")
        with Image.open(tmp_path / "thumbnail.webp") as thumbnail:
            assert (thumbnail.format, f"{thumbnail.size[0]}x{thumbnail.size[1]}") == ("WEBP", render.size)
        with Image.open(tmp_path / "spritesheet.jpg") as spritesheet:
            assert spritesheet.format == "JPEG"
        for variant in files:
            [row] = asset_rows(stack, video.id, variant)
            assert object_digest(stack, row["s3_key"]) == (row["sha256"], row["bytes"])
        # The provider's own webhook for this render reached the profile's receiver and was acted on: at once, or,
        # for one that beat the create's commit (a provider may call back as soon as the task exists), once the
        # reconciler matched it to the video.
        [video_row] = sql(stack, "SELECT upstream_id FROM videos WHERE id = $1", video.id)
        events = sql(
            stack,
            "SELECT outcome FROM webhook_events WHERE upstream_profile = $1 AND upstream_video_id = $2",
            render.kind,
            video_row["upstream_id"],
        )
        assert events and {event["outcome"] for event in events} <= {"enqueued", "ignored", "matched"}

    def test_a_moderation_refusal_is_failed_moderation_blocked(self, stack: Stack, render: Render) -> None:
        with sdk(stack, stack.new_caller_key()) as client:
            video = client.videos.create_and_poll(
                model=render.model,
                prompt="something forbidden",
                seconds=render.seconds,  # type: ignore[arg-type]
                size=render.size,  # type: ignore[arg-type]
                poll_interval_ms=200,
            )
        assert video.status == "failed"
        assert video.error is not None and video.error.code == "moderation_blocked"

    def test_a_value_the_model_cannot_take_is_a_400_before_any_call(self, stack: Stack, render: Render) -> None:
        before = simulator_creates(stack, render.kind)
        fields: dict[str, Any] = {"seconds": render.seconds, "size": render.size, **render.refused}
        with sdk(stack, stack.new_caller_key()) as client, pytest.raises(openai.BadRequestError) as caught:
            client.videos.create(model=render.model, prompt="not this one", **fields)
        body: Any = caught.value.body
        assert body["param"] == render.refused_param
        assert simulator_creates(stack, render.kind) == before


@pytest.mark.parametrize("render", RENDERS, ids=KINDS)
def test_every_webhook_lost_the_reconciler_still_archives_all_three(
    private_stack: Callable[..., Any], render: Render
) -> None:
    with private_stack(workers=1, live=(render.kind,)) as stack:
        with httpx.Client(base_url=stack.live_urls[render.kind], headers=auth_headers(render.kind)) as simulator:
            simulator.patch("/_sim/faults", json={"webhook_drop_probability": 1.0}).raise_for_status()
        key = stack.new_caller_key()
        with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as api:
            body = {"model": render.model, "seconds": render.seconds, "size": render.size}
            ids = [api.post("/v1/videos", json={**body, "prompt": f"clip {n}"}).json()["id"] for n in range(2)]
        # Nobody polls through the API (the database is read directly) and no webhook arrives: only the
        # reconciler can find them.
        for video_id in ids:
            wait_for(partial(archived_in_database, stack, video_id), timeout=120, what=f"{video_id} archived")
        assert sql(stack, "SELECT count(*) AS n FROM webhook_events")[0]["n"] == 0


def archived_in_database(stack: Stack, video_id: str) -> bool:
    rows = sql(stack, "SELECT state FROM assets WHERE video_id = $1", video_id)
    return len(rows) == 3 and {row["state"] for row in rows} == {"archived"}


# Where each simulator deletes a render's file now (the provider's retention passing early).
EXPIRE_PATHS: dict[str, Callable[[str], str]] = {
    "seedance": lambda upstream_id: f"/_sim/tasks/{upstream_id}/expire",
    "fal": lambda upstream_id: f"/_sim/requests/{upstream_id.rpartition(':')[2]}/expire",
    "replicate": lambda upstream_id: f"/_sim/predictions/{upstream_id}/expire",
}


@pytest.mark.parametrize("render", RENDERS, ids=KINDS)
def test_a_file_gone_before_the_download_is_expired_with_the_reason(
    private_stack: Callable[..., Any], render: Render
) -> None:
    with private_stack(workers=0, live=(render.kind,)) as stack:
        key = stack.new_caller_key()
        with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as api:
            body = {"model": render.model, "seconds": render.seconds, "size": render.size, "prompt": "gone soon"}
            video_id = api.post("/v1/videos", json=body).json()["id"]
            # Polled to completion through the API (no worker yet): the downloads are queued, not run.
            wait_for(lambda: api.get(f"/v1/videos/{video_id}").json()["status"] == "completed", timeout=60, what="done")
        [row] = sql(stack, "SELECT upstream_id FROM videos WHERE id = $1", video_id)
        with httpx.Client(base_url=stack.live_urls[render.kind], headers=auth_headers(render.kind)) as simulator:
            simulator.post(EXPIRE_PATHS[render.kind](row["upstream_id"])).raise_for_status()
        started = time.monotonic()
        stack.start_worker()

        def mp4_settled() -> dict[str, Any] | None:
            rows = sql(stack, "SELECT state, error FROM assets WHERE video_id = $1 AND variant = 'video'", video_id)
            return dict(rows[0]) if rows and rows[0]["state"] not in ("pending", "downloading") else None

        mp4 = wait_for(mp4_settled, timeout=60, what="the MP4's download settled")
        assert mp4["state"] == "expired", mp4
        assert "no longer serves" in mp4["error"]
        assert time.monotonic() - started < 45  # settled on the evidence, not after every attempt is spent
