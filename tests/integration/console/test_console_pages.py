"""What the pages show: filters, keyset paging across pages, a video's page and its actions, callers, webhooks."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from html import unescape

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update
from standardwebhooks import Webhook

from app.core.db import Database
from app.models import ArchiveJob, CallbackDelivery
from tests.support.console import PAGE_SIZE, ROW_IDS, csrf_token, sign_in
from tests.support.factories import MadeCaller, make_caller, make_video
from tests.support.gateway import gateway_client
from tests.support.settings import TEST_WEBHOOK_SECRET

SIGNATURE = "v1,bm90LXRoZS1yZWFsLWhtYWMtb2YtdGhpcy1ib2R5ISE="  # well formed (32 bytes), but not the HMAC of the body


async def videos_at(
    database: Database,
    caller: MadeCaller,
    statuses: list[str],
    *,
    same_time: bool = False,
    start: datetime | None = None,
) -> list[str]:
    """Videos of `caller` written straight to the table, in one transaction: `statuses` in order, one second apart
    from `start` (an hour ago by default), or all at `start` with `same_time`; their ids."""
    start = start or datetime.now(UTC) - timedelta(hours=1)
    async with database.sessionmaker.begin() as session:
        return [
            (
                await make_video(
                    session,
                    caller=caller,
                    status=status,
                    upstream_id=None,
                    size="1280x720",
                    prompt=f"seeded {index}",
                    created_at=start if same_time else start + timedelta(seconds=index),
                )
            ).id
            for index, status in enumerate(statuses)
        ]


def rows_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return ROW_IDS.findall(response.text)


def link(response: httpx.Response, rel: str) -> str | None:
    marker = f'rel="{rel}"'
    for chunk in response.text.split("<a ")[1:]:
        if marker in chunk.split(">")[0]:
            return unescape(chunk.split('href="')[1].split('"')[0])
    return None


class TestVideoTable:
    async def test_filters_by_caller_and_status(self, operator: httpx.AsyncClient, database: Database) -> None:
        mine, other = await make_caller(database), await make_caller(database)
        queued, completed = await videos_at(database, mine, ["queued", "completed"])
        await videos_at(database, other, ["completed"])
        assert rows_of(await operator.get("/console/videos", params={"caller": str(mine.id)})) == [
            completed,
            queued,
        ]
        by_status = rows_of(await operator.get("/console/videos", params={"caller": str(mine.id), "status": "queued"}))
        assert by_status == [queued]
        everyone_completed = rows_of(await operator.get("/console/videos", params={"status": "completed"}))
        assert queued not in everyone_completed

    async def test_keyset_pages_walk_every_row_once_both_ways(
        self, operator: httpx.AsyncClient, database: Database
    ) -> None:
        caller = await make_caller(database)
        # Seeded first, so older than every spread row: three rows at one instant, their order left to the id.
        tied = await videos_at(database, caller, ["completed"] * 3, same_time=True)
        spread = await videos_at(database, caller, ["queued"] * 5)
        expected = list(reversed(spread))
        all_rows = rows_of(await operator.get("/console/videos", params={"caller": str(caller.id)}))
        assert len(all_rows) == PAGE_SIZE
        seen: list[str] = []
        pages: list[list[str]] = []
        url: str | None = f"/console/videos?caller={caller.id}"
        while url is not None:
            response = await operator.get(url)
            pages.append(rows_of(response))
            seen += pages[-1]
            url = link(response, "next")
        assert sorted(seen) == sorted(spread + tied)
        assert len(seen) == len(set(seen)) == 8
        assert [page for page in pages if len(page) > PAGE_SIZE] == []
        created_order = [video for video in seen if video in spread]
        assert created_order == expected
        assert sorted(seen[-3:]) == sorted(tied)  # the tied ones come last, each once, ordered by id
        assert seen[-3:] == sorted(tied, reverse=True)
        # And back: "Newer" from the last page returns the same pages in reverse.
        back: list[list[str]] = [pages[-1]]
        url = link(response, "prev")
        while url is not None:
            response = await operator.get(url)
            back.append(rows_of(response))
            url = link(response, "prev")
        assert back == list(reversed(pages))

    async def test_the_rows_fragment_refreshes_the_same_page(
        self, operator: httpx.AsyncClient, database: Database
    ) -> None:
        caller = await make_caller(database)
        [video] = await videos_at(database, caller, ["in_progress"])
        response = await operator.get("/console/videos/rows", params={"caller": str(caller.id)})
        assert rows_of(response) == [video]
        assert "<html" not in response.text
        page = await operator.get("/console/videos", params={"caller": str(caller.id)})
        assert f'data-refresh-src="/console/videos/rows?caller={caller.id}"' in page.text

    async def test_at_risk_downloads_stand_out(
        self,
        operator: httpx.AsyncClient,
        database: Database,
    ) -> None:
        caller = await make_caller(database)
        risky, safe = await videos_at(database, caller, ["completed", "completed"])
        async with database.sessionmaker.begin() as session:
            now = time.time()
            for video_id, minutes in ((risky, 3), (safe, 50)):
                session.add(
                    ArchiveJob(
                        kind="download",
                        video_id=video_id,
                        variant="video",
                        state="queued",
                        max_attempts=5,
                        deadline=_at(now + minutes * 60),
                    )
                )
        response = await operator.get("/console/videos", params={"caller": str(caller.id)})
        rows = {row_id: chunk for row_id, chunk in _row_chunks(response.text)}
        assert 'class="at-risk"' in rows[risky]
        assert "at-risk" not in rows[safe]


class TestVideoPage:
    async def test_shows_the_timeline_and_re_archives_with_the_form_token(
        self, console_app: FastAPI, operator: httpx.AsyncClient, database: Database
    ) -> None:
        caller = await make_caller(database)
        async with gateway_client(console_app, caller.key) as api:
            created = await api.post("/v1/videos", files={"prompt": (None, "a paper boat")})
            assert created.status_code == 200, created.text
            video_id = created.json()["id"]
            for _ in range(100):  # the in-process simulator renders in 0.3 s; a retrieve refreshes from it
                if (await api.get(f"/v1/videos/{video_id}")).json()["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
        page = await operator.get(f"/console/videos/{video_id}")
        assert page.status_code == 200
        assert "created (sora-2" in page.text
        assert "completed upstream" in page.text
        assert "Re-archive" in page.text
        token = await csrf_token(operator, f"/console/videos/{video_id}")
        # The completion queued its downloads; while they are live, a re-archive has nothing to add.
        response = await operator.post(f"/console/videos/{video_id}/rearchive", data={"csrf_token": token})
        assert response.headers["location"] == f"/console/videos/{video_id}?notice=not_rearchived"
        async with database.sessionmaker.begin() as session:  # as if a worker had archived them
            await session.execute(update(ArchiveJob).where(ArchiveJob.video_id == video_id).values(state="succeeded"))
        response = await operator.post(f"/console/videos/{video_id}/rearchive", data={"csrf_token": token})
        assert response.status_code == 303
        assert response.headers["location"] == f"/console/videos/{video_id}?notice=rearchived"
        async with database.sessionmaker() as session:
            jobs = (
                await session.execute(
                    select(ArchiveJob.variant).where(
                        ArchiveJob.video_id == video_id, ArchiveJob.kind == "download", ArchiveJob.state == "queued"
                    )
                )
            ).scalars()
            assert set(jobs) == {"video", "thumbnail", "spritesheet"}
        after = await operator.get(f"/console/videos/{video_id}?notice=rearchived")
        assert "Re-archive queued" in after.text
        assert "download job (video) queued" in after.text

    async def test_an_unknown_video_is_a_404(self, operator: httpx.AsyncClient) -> None:
        assert (await operator.get("/console/videos/video_nope")).status_code == 404

    async def test_retries_a_failed_callback_once_asked(
        self,
        operator: httpx.AsyncClient,
        database: Database,
    ) -> None:
        caller = await make_caller(database)
        [video_id] = await videos_at(database, caller, ["failed"])
        async with database.sessionmaker.begin() as session:
            delivery = CallbackDelivery(
                webhook_id=f"msg_{uuid.uuid4().hex}",
                event_id=f"evt_{uuid.uuid4().hex}",
                event_type="video.failed",
                caller_id=caller.id,
                video_id=video_id,
                url="http://127.0.0.1:9/hook",
                payload="{}",
                state="failed",
                attempts=8,
                last_error="connection refused",
            )
            session.add(delivery)
            await session.flush()
            delivery_id = delivery.id
        page = await operator.get(f"/console/videos/{video_id}")
        assert "Retry now" in page.text
        token = await csrf_token(operator, f"/console/videos/{video_id}")
        response = await operator.post(f"/console/callbacks/{delivery_id}/retry", data={"csrf_token": token})
        assert response.headers["location"] == f"/console/videos/{video_id}?notice=retried"
        async with database.sessionmaker() as session:
            state = (
                await session.execute(select(CallbackDelivery.state).where(CallbackDelivery.id == delivery_id))
            ).scalar_one()
            assert state == "pending"
        # Delivered is final: the same button is not offered and the action refuses.
        async with database.sessionmaker.begin() as session:
            await session.execute(
                update(CallbackDelivery).where(CallbackDelivery.id == delivery_id).values(state="delivered")
            )
        response = await operator.post(f"/console/callbacks/{delivery_id}/retry", data={"csrf_token": token})
        assert response.headers["location"].endswith("notice=not_retried")


class TestWebhooks:
    async def test_a_rejected_delivery_shows_why_with_its_signature_redacted(
        self, console_app: FastAPI, operator: httpx.AsyncClient
    ) -> None:
        body = json.dumps({"id": "evt_x", "type": "video.completed", "data": {"id": "video_up"}})
        webhook_id = f"wh_{uuid.uuid4().hex}"
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": SIGNATURE,
            "authorization": "Bearer leaked-credential",
        }
        async with gateway_client(console_app, None) as sender:
            refused = await sender.post("/webhooks/openai", content=body, headers=headers)
            assert refused.status_code == 401
        response = await operator.get("/console/webhooks", params={"outcome": "rejected"})
        assert response.status_code == 200
        assert webhook_id in response.text
        assert "v1,[redacted]" in response.text
        assert SIGNATURE.split(",")[1] not in response.text
        assert "leaked-credential" not in response.text
        assert "401" in response.text

    async def test_a_verified_delivery_is_listed_as_verified_and_stored(
        self, console_app: FastAPI, operator: httpx.AsyncClient
    ) -> None:
        webhook_id = f"wh_{uuid.uuid4().hex}"
        body = json.dumps({"id": f"evt_{uuid.uuid4().hex}", "type": "video.completed", "data": {"id": "video_up"}})
        timestamp = int(time.time())
        signature = Webhook(TEST_WEBHOOK_SECRET).sign(webhook_id, _at(timestamp), body)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": signature,
        }
        async with gateway_client(console_app, None) as sender:
            for _ in range(2):
                assert (await sender.post("/webhooks/openai", content=body, headers=headers)).status_code == 200
        verified = await operator.get("/console/webhooks", params={"outcome": "verified"})
        assert webhook_id in verified.text
        assert signature.split(",")[1] not in verified.text
        duplicate = await operator.get("/console/webhooks", params={"outcome": "duplicate"})
        assert webhook_id in duplicate.text
        everything = await operator.get("/console/webhooks")
        seen, stored = everything.text.split('id="stored-heading"')
        assert seen.count(f'<span class="mono">{webhook_id}</span>') == 2  # both deliveries, as sent
        assert stored.count(webhook_id) == 1  # one row in Postgres


class TestCallers:
    async def test_shows_keys_by_prefix_limits_spend_and_a_chart(
        self, operator: httpx.AsyncClient, database: Database
    ) -> None:
        caller = await make_caller(database)
        # Seeded now, not an hour back: between 00:00 and 01:00 UTC that would be yesterday's spend.
        await videos_at(database, caller, ["completed", "completed"], start=datetime.now(UTC))
        response = await operator.get("/console/callers")
        assert response.status_code == 200
        assert caller.name in response.text
        assert caller.key not in response.text
        assert caller.key[:7] in response.text
        section = response.text.split(caller.name, 1)[1].split('<section class="caller"', 1)[0]
        assert "<svg" in section
        assert "Spend this day" in section
        assert "$0.80 of $100.00" in section  # two 4 s renders of sora-2 at $0.10/s


async def test_sign_in_works_again_after_sign_out(console_app: FastAPI, operator: httpx.AsyncClient) -> None:
    await operator.post("/console/logout", data={"csrf_token": await csrf_token(operator)})
    assert (await sign_in(operator)).status_code == 303
    assert (await operator.get("/console/callers")).status_code == 200


def _row_chunks(html: str) -> list[tuple[str, str]]:
    chunks = []
    for chunk in html.split("<tr ")[1:]:
        found = ROW_IDS.search(chunk)
        if found:
            chunks.append((found.group(1), chunk.split(">")[0]))
    return chunks


def _at(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
