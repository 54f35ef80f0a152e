"""Idempotency-Key on the paid POSTs: a repeat is answered from the store and never buys a second render.

Against the in-process gateway, the simulator as upstream and real Postgres; every test counts the paid
calls that reached upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
from sqlalchemy import text

from app.core.db import Database
from tests.support.gateway import NewCaller
from tests.support.idempotency import (
    PROMPT_FIELDS,
    BrokenUpstream,
    GatewayFactory,
    ScriptedUpstream,
    multipart,
    new_key,
    png,
    post_multipart,
    records_with_key,
    uploads,
)
from tests.support.transports import CountingTransport


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["code"] == code
    return error


async def wait_until_completed(client: httpx.AsyncClient, video_id: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = (await client.get(f"/v1/videos/{video_id}")).json()["status"]
        if status == "completed":
            return
        assert status in ("queued", "in_progress"), status
        await asyncio.sleep(0.1)
    raise AssertionError(f"{video_id} did not complete in {timeout}s")


async def video_ids(client: httpx.AsyncClient) -> list[str]:
    return [video["id"] for video in (await client.get("/v1/videos", params={"limit": 100})).json()["data"]]


class TestRepeats:
    async def test_multipart_repeat_under_a_new_boundary_replays_with_one_render(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport
    ) -> None:
        key, image, before = new_key(), png(), uploads(upstream_transport)
        first = await post_multipart(api, key, boundary="sdk-attempt-one-7f3a", image=image)
        second = await post_multipart(api, key, boundary="sdk-attempt-two-91c4", image=image)
        assert first.status_code == second.status_code == 200, (first.text, second.text)
        assert second.content == first.content
        assert second.headers["content-type"] == first.headers["content-type"]
        assert "idempotent-replayed" not in first.headers
        assert second.headers["idempotent-replayed"] == "true"
        assert uploads(upstream_transport) - before == 1
        assert await video_ids(api) == [first.json()["id"]]

    async def test_json_repeat_replays_with_one_render(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport
    ) -> None:
        key, before = new_key(), uploads(upstream_transport)
        first = await api.post(
            "/v1/videos", json={"prompt": "a kite", "seconds": "8"}, headers={"Idempotency-Key": key}
        )
        # The same object with its keys in another order and other whitespace is the same request.
        second = await api.post(
            "/v1/videos",
            content=b'{ "seconds" : "8", "prompt" : "a kite" }',
            headers={"Idempotency-Key": key, "content-type": "application/json"},
        )
        assert first.status_code == second.status_code == 200, first.text
        assert second.json() == first.json()
        assert uploads(upstream_transport) - before == 1

    async def test_a_different_request_under_the_same_key_is_422(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport
    ) -> None:
        key, before = new_key(), uploads(upstream_transport)
        assert (await post_multipart(api, key, image=png())).status_code == 200
        other_image = await post_multipart(api, key, image=png(color=(0, 0, 0)))
        other_prompt = await post_multipart(api, key, {**PROMPT_FIELDS, "prompt": "a paper plane"}, image=png())
        as_json = await api.post("/v1/videos", json=PROMPT_FIELDS, headers={"Idempotency-Key": key})
        for response in (other_image, other_prompt, as_json):
            error = assert_error(response, 422, "idempotency_key_reused")
            assert error["type"] == "invalid_request_error"
        assert uploads(upstream_transport) - before == 1

    async def test_without_the_header_nothing_changes(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport, database: Database
    ) -> None:
        before = uploads(upstream_transport)
        first = await post_multipart(api, None)
        second = await post_multipart(api, None)
        assert first.status_code == second.status_code == 200
        assert first.json()["id"] != second.json()["id"]
        assert "idempotent-replayed" not in second.headers
        assert uploads(upstream_transport) - before == 2


class TestScope:
    async def test_another_caller_with_the_same_key_gets_its_own_render(
        self, api: httpx.AsyncClient, other_api: httpx.AsyncClient, upstream_transport: CountingTransport
    ) -> None:
        key, before = new_key(), uploads(upstream_transport)
        mine = await post_multipart(api, key)
        theirs = await post_multipart(other_api, key)
        assert mine.status_code == theirs.status_code == 200
        assert "idempotent-replayed" not in theirs.headers
        assert theirs.json()["id"] != mine.json()["id"]
        assert uploads(upstream_transport) - before == 2
        # Each caller's repeat replays its own answer; neither can reach the other's video.
        assert (await post_multipart(other_api, key)).json()["id"] == theirs.json()["id"]
        assert (await post_multipart(api, key)).json()["id"] == mine.json()["id"]
        assert (await other_api.get(f"/v1/videos/{mine.json()['id']}")).status_code == 404
        assert uploads(upstream_transport) - before == 2

    async def test_an_unauthenticated_request_gets_401_and_claims_nothing(
        self, gateway_app: Any, database: Database
    ) -> None:
        key = new_key()
        transport = httpx.ASGITransport(app=gateway_app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.test") as anonymous:
            response = await post_multipart(anonymous, key)
            anonymous.headers["authorization"] = "Bearer vg_not-a-key"
            wrong = await post_multipart(anonymous, key)
        assert_error(response, 401, "missing_api_key")
        assert_error(wrong, 401, "invalid_api_key")
        assert await records_with_key(database, key) == []

    async def test_a_body_over_the_limit_gets_the_413_of_the_body_limit(
        self, own_gateway: GatewayFactory, upstream_transport: CountingTransport, database: Database
    ) -> None:
        key = new_key()
        headers, body = multipart({**PROMPT_FIELDS, "prompt": "x" * 3000})

        async def chunked() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 1000):
                yield body[start : start + 1000]

        async with own_gateway(upstream_transport, max_request_bytes=2048) as client:
            declared = await client.post("/v1/videos", content=body, headers={**headers, "idempotency-key": key})
            streamed = await client.post("/v1/videos", content=chunked(), headers={**headers, "idempotency-key": key})
        assert_error(declared, 413, "request_too_large")
        assert_error(streamed, 413, "request_too_large")
        assert await records_with_key(database, key) == []

    async def test_an_unusable_key_is_400(self, api: httpx.AsyncClient) -> None:
        response = await post_multipart(api, "k" * 256)
        error = assert_error(response, 400, "invalid_idempotency_key")
        assert error["param"] == "Idempotency-Key"


class TestConcurrency:
    async def test_concurrent_repeats_get_409_while_the_first_runs(
        self, own_gateway: GatewayFactory, upstream_transport: CountingTransport
    ) -> None:
        slow = ScriptedUpstream(upstream_transport, delay=0.5)
        async with own_gateway(slow) as client:
            key, before = new_key(), uploads(upstream_transport)
            responses = await asyncio.gather(*(post_multipart(client, key) for _ in range(5)))
            fresh = [r for r in responses if r.status_code == 200 and "idempotent-replayed" not in r.headers]
            assert len(fresh) == 1, [r.status_code for r in responses]
            conflicts = [r for r in responses if r.status_code == 409]
            assert conflicts, [r.status_code for r in responses]
            for conflict in conflicts:
                assert_error(conflict, 409, "idempotency_key_in_use")
                # The stock SDK retries a 409 after Retry-After and then gets the stored answer.
                assert conflict.headers["retry-after"] == "1"
            assert slow.paid == 1
            assert uploads(upstream_transport) - before == 1
            replay = await post_multipart(client, key)
            assert replay.status_code == 200 and replay.content == fresh[0].content

    async def test_a_claim_that_never_finished_is_not_taken_over(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport, database: Database
    ) -> None:
        key = new_key()
        assert (await post_multipart(api, key)).status_code == 200
        # As if the process had died mid-request ten minutes ago: the render may have started.
        async with database.sessionmaker.begin() as session:
            await session.execute(
                text(
                    "UPDATE idempotency_keys SET state = 'in_flight', response_status = NULL, "
                    "created_at = now() - interval '10 minutes' WHERE key = :key"
                ),
                {"key": key},
            )
        before = uploads(upstream_transport)
        response = await post_multipart(api, key)
        assert_error(response, 409, "idempotency_request_unfinished")
        assert response.headers["x-should-retry"] == "false"  # the stock SDK gives up at once
        assert uploads(upstream_transport) == before


class TestWhatIsKept:
    async def test_a_refused_request_releases_its_key(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport, database: Database
    ) -> None:
        key, before = new_key(), uploads(upstream_transport)
        refused = await post_multipart(api, key, {**PROMPT_FIELDS, "seconds": "5"})
        assert_error(refused, 400, "invalid_value")
        assert await records_with_key(database, key) == []
        fixed = await post_multipart(api, key)
        assert fixed.status_code == 200 and "idempotent-replayed" not in fixed.headers
        assert uploads(upstream_transport) - before == 1

    async def test_an_ambiguous_upstream_failure_is_replayed_not_retried(
        self, own_gateway: GatewayFactory, upstream_transport: CountingTransport
    ) -> None:
        failing = ScriptedUpstream(upstream_transport, outcome=500)
        async with own_gateway(failing) as client:
            key = new_key()
            first = await post_multipart(client, key)
            second = await post_multipart(client, key)
        assert_error(first, 502, "upstream_error")
        assert first.headers["x-should-retry"] == "false"
        assert (second.status_code, second.content) == (first.status_code, first.content)
        assert second.headers["x-should-retry"] == "false"
        assert second.headers["idempotent-replayed"] == "true"
        assert failing.paid == 1

    async def test_a_crash_after_the_upstream_call_is_replayed_not_retried(
        self, own_gateway: GatewayFactory, database: Database
    ) -> None:
        broken = BrokenUpstream()
        async with own_gateway(broken) as client:
            key = new_key()
            first = await post_multipart(client, key)
            second = await post_multipart(client, key)
        assert first.status_code == second.status_code == 500
        assert first.json()["error"]["type"] == "server_error"
        assert first.headers["x-should-retry"] == "false"
        assert second.content == first.content
        assert broken.paid == 1
        [record] = await records_with_key(database, key)
        assert (record.state, record.response_status) == ("completed", 500)


class TestExpiry:
    async def test_an_expired_key_is_a_new_request_and_old_records_are_purged(
        self,
        own_gateway: GatewayFactory,
        upstream_transport: CountingTransport,
        database: Database,
    ) -> None:
        async with own_gateway(upstream_transport, ttl_seconds=0.3) as client:
            key, other, before = new_key(), new_key(), uploads(upstream_transport)
            first = await post_multipart(client, key)
            assert (await post_multipart(client, other)).status_code == 200
            await asyncio.sleep(0.4)
            second = await post_multipart(client, key)
            assert first.status_code == second.status_code == 200
            assert "idempotent-replayed" not in second.headers
            assert second.json()["id"] != first.json()["id"]
            assert uploads(upstream_transport) - before == 3
        # The second claim garbage-collected the other expired record on its way.
        assert await records_with_key(database, other) == []
        [record] = await records_with_key(database, key)
        assert record.expires_at > record.created_at


class TestRemix:
    async def test_remix_repeat_replays_and_a_different_prompt_is_422(
        self, api: httpx.AsyncClient, upstream_transport: CountingTransport, new_caller_key: NewCaller
    ) -> None:
        source = await post_multipart(api, None)
        assert source.status_code == 200
        source_id = source.json()["id"]
        await wait_until_completed(api, source_id)
        key, before = new_key(), uploads(upstream_transport)
        path = f"/v1/videos/{source_id}/remix"
        first = await api.post(path, json={"prompt": "now at night"}, headers={"Idempotency-Key": key})
        second = await api.post(path, json={"prompt": "now at night"}, headers={"Idempotency-Key": key})
        assert first.status_code == second.status_code == 200, first.text
        assert second.content == first.content
        assert second.json()["remixed_from_video_id"] == source_id
        other = await api.post(path, json={"prompt": "now in fog"}, headers={"Idempotency-Key": key})
        assert_error(other, 422, "idempotency_key_reused")
        # The same key on the create path is another request too.
        assert_error(await post_multipart(api, key), 422, "idempotency_key_reused")
        assert uploads(upstream_transport) - before == 1
