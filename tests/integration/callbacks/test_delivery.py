"""docs/reliability.md rows 54, 55, 57 at delivery: signed by the caller's secret, retried on the schedule, never
redirected, pinned to the checked address (DNS rebinding reaches nothing), durable, and never logged."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging

import pytest
from standardwebhooks import Webhook

from app.callbacks import delivery, service
from app.callbacks.service import CallbackEvent
from app.core import outbound_urls
from app.core.db import Database
from app.core.outbound_urls import IPAddress
from app.models import Video, VideoStatus
from tests.support.callbacks import CallbackStack, Receiver, SenderContext, StackFactory, callback_settings


class TestSignedDelivery:
    async def test_the_receiver_verifies_video_archived_with_the_callers_secret(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, client = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url(), metadata={"order": "42"})
        await stack.emit(video, CallbackEvent.ARCHIVED)
        await stack.deliver_until(lambda: bool(receiver.requests))

        async with client:
            secret = (await client.get("/v1/callbacks/secret")).json()["secret"]
        assert secret.startswith("whsec_")
        (request,) = receiver.requests
        assert request.method == "POST" and request.path == "/hook"
        assert request.headers["content-type"] == "application/json"
        event = Webhook(secret).verify(request.body, request.headers)
        assert event["id"].startswith("evt_")
        assert event["object"] == "event" and event["type"] == "video.archived"
        assert isinstance(event["created_at"], int)
        assert event["data"] == {
            "id": video.id,
            "status": "completed",
            "metadata": {"order": "42"},
            "archive": {"video": {"state": "archived", "bytes": 1234, "sha256": "ab" * 32}},
            "error": None,
        }
        (row,) = await stack.deliveries(video.id)
        assert row.state == "delivered" and row.attempts == 1
        assert request.headers["webhook-id"] == row.webhook_id

    async def test_another_callers_secret_does_not_verify(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, _ = await stack.new_caller()
        _, other = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)
        await stack.deliver_until(lambda: bool(receiver.requests))
        async with other:
            other_secret = (await other.get("/v1/callbacks/secret")).json()["secret"]
        with pytest.raises(Exception, match="No matching signature"):
            Webhook(other_secret).verify(receiver.requests[0].body, receiver.requests[0].headers)

    async def test_after_a_rotation_both_secrets_sign_until_the_grace_ends(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, client = await stack.new_caller()
        async with client:
            old = (await client.get("/v1/callbacks/secret")).json()["secret"]
            rotated = (await client.post("/v1/callbacks/secret/rotate")).json()
            assert (await client.get("/v1/callbacks/secret")).json()["secret"] == rotated["secret"] != old
        assert rotated["previous_secret_valid_until"] > rotated["rotated_at"]
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)
        await stack.deliver_until(lambda: bool(receiver.requests))
        request = receiver.requests[0]
        Webhook(rotated["secret"]).verify(request.body, request.headers)
        Webhook(old).verify(request.body, request.headers)

    async def test_a_failed_video_is_announced_with_its_error(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url(), status=VideoStatus.FAILED, archived=False)
        async with stack.database.sessionmaker.begin() as session:
            row = await session.get(Video, video.id)
            assert row is not None
            row.error_code, row.error_message = "moderation_blocked", "blocked"
        await stack.emit(video, CallbackEvent.FAILED)
        await stack.deliver_until(lambda: bool(receiver.requests))
        body = json.loads(receiver.requests[0].body)
        assert body["type"] == "video.failed"
        assert body["data"]["status"] == "failed" and body["data"]["archive"] == {}
        assert body["data"]["error"] == {"code": "moderation_blocked", "message": "blocked"}


class TestRetries:
    async def test_a_500_is_retried_on_the_schedule_then_given_up(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack  # 3 attempts, waits of 0.3 s then 0.6 s
        receiver.default = (500, {})
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)
        (row,) = await stack.settle(video.id)

        assert row.state == "failed" and row.attempts == 3 and row.last_status == 500
        assert len(receiver.requests) == 3
        assert {request.headers["webhook-id"] for request in receiver.requests} == {row.webhook_id}
        assert len({request.body for request in receiver.requests}) == 1  # the same event, re-signed
        gaps = [later.at - earlier.at for earlier, later in zip(receiver.requests, receiver.requests[1:], strict=False)]
        assert 0.3 <= gaps[0] < 0.3 + 0.5, gaps
        assert 0.6 <= gaps[1] < 0.6 + 0.5, gaps
        attempts = await stack.attempts(video.id)
        assert [(a.attempt, a.outcome, a.status_code, a.address) for a in attempts] == [
            (1, "http_error", 500, "127.0.0.1"),
            (2, "http_error", 500, "127.0.0.1"),
            (3, "http_error", 500, "127.0.0.1"),
        ]

    async def test_a_receiver_that_recovers_gets_the_event_once(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        receiver.script = [(503, {})]
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)
        (row,) = await stack.settle(video.id)
        assert row.state == "delivered" and row.attempts == 2
        assert [a.outcome for a in await stack.attempts(video.id)] == ["http_error", "delivered"]

    async def test_a_receiver_that_does_not_answer_in_time_is_a_failed_attempt(
        self, make_stack: StackFactory, receiver: Receiver
    ) -> None:
        async with make_stack(callback_settings(timeout_seconds=0.3, max_attempts=1)) as stack:
            receiver.stall_seconds = 2.0
            caller, _ = await stack.new_caller()
            video = await stack.new_video(caller, callback_url=receiver.url())
            await stack.emit(video)
            (row,) = await stack.settle(video.id)
            assert row.state == "failed"
            (attempt,) = await stack.attempts(video.id)
            assert attempt.outcome == "timeout" and attempt.duration_ms is not None and attempt.duration_ms < 1500


class TestNoRedirects:
    async def test_a_redirect_is_a_failed_attempt_and_is_not_followed(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        receiver.script = [(307, {"location": receiver.url("/elsewhere")})]
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)
        (row,) = await stack.settle(video.id)
        assert receiver.to("/elsewhere") == []
        assert [request.path for request in receiver.requests] == ["/hook", "/hook"]
        first, second = await stack.attempts(video.id)
        assert (first.outcome, first.status_code) == ("redirect", 307)
        assert second.outcome == "delivered" and row.state == "delivered"


class TestDnsRebinding:
    async def test_a_name_allowed_at_create_that_rebinds_to_a_denied_address_receives_nothing(
        self, callback_stack: CallbackStack, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        stack = callback_stack
        answers = {"hooks.rebind.test": "127.0.0.1"}

        def resolve(host: str) -> list[IPAddress]:
            if host not in answers:
                raise OSError("name not known")
            return [ipaddress.ip_address(answers[host])]

        monkeypatch.setattr(outbound_urls, "resolve", resolve)
        url = f"http://hooks.rebind.test:{receiver.port}/hook"
        _, client = await stack.new_caller()
        async with client:
            created = await client.post("/v1/videos", json={"prompt": "rebind", "callback_url": url})
        assert created.status_code == 200, created.text  # validated: resolves into the allow-list
        async with stack.database.sessionmaker() as session:
            video = await session.get(Video, created.json()["id"])
            assert video is not None

        answers["hooks.rebind.test"] = "10.0.0.5"  # the attacker's DNS now points inside the network
        await stack.emit(video)
        assert await delivery.deliver_due(stack.context) == 1
        assert receiver.requests == []
        (refused,) = await stack.attempts(video.id)
        assert refused.outcome == "refused" and refused.address is None
        assert refused.error is not None and "resolves to 10.0.0.5" in refused.error
        (row,) = await stack.deliveries(video.id)
        assert row.state == "pending"  # retried on the schedule; checked again each time

        # Back on an allowed address: the connection goes to the checked IP, the name only in Host.
        answers["hooks.rebind.test"] = "127.0.0.1"
        await stack.settle(video.id)
        (request,) = receiver.requests
        assert request.headers["host"] == f"hooks.rebind.test:{receiver.port}"
        assert [a.outcome for a in await stack.attempts(video.id)] == ["refused", "delivered"]


class TestOutbox:
    async def test_the_hook_is_idempotent_per_video_event_and_destination(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video, CallbackEvent.ARCHIVED)
        await stack.emit(video, CallbackEvent.ARCHIVED)
        await stack.emit(video, CallbackEvent.ARCHIVE_FAILED)
        rows = await stack.deliveries(video.id)
        assert sorted(row.event_type for row in rows) == ["video.archive_failed", "video.archived"]

    async def test_nothing_is_recorded_when_the_callers_transaction_rolls_back(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        with pytest.raises(RuntimeError, match="the job lost its lease"):
            async with stack.database.sessionmaker.begin() as session:
                current = await session.get(Video, video.id)
                assert current is not None
                await service.on_video_event(
                    session, video=current, event=CallbackEvent.ARCHIVED, settings=stack.settings.callbacks
                )
                await session.flush()
                raise RuntimeError("the job lost its lease")  # the fenced transaction goes, and the event with it
        assert await stack.deliveries(video.id) == []

    async def test_rows_survive_a_restart_and_concurrent_senders_deliver_once(
        self, callback_stack: CallbackStack, receiver: Receiver
    ) -> None:
        stack = callback_stack
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        await stack.emit(video)

        # A fresh process: new engine, several senders racing for the same row.
        database = Database.connect(stack.settings.db)
        try:
            context = SenderContext(stack.settings, database)
            sent = await asyncio.gather(*(delivery.deliver_due(context) for _ in range(4)))
            assert sum(sent) == 1
            assert sum(await asyncio.gather(*(delivery.deliver_due(context) for _ in range(4)))) == 0
        finally:
            await database.dispose()
        assert len(receiver.requests) == 1
        (row,) = await stack.deliveries(video.id)
        assert row.state == "delivered"

    async def test_a_deleted_video_is_not_announced(self, callback_stack: CallbackStack, receiver: Receiver) -> None:
        stack = callback_stack
        caller, _ = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url())
        async with stack.database.sessionmaker.begin() as session:
            row = await session.get(Video, video.id)
            assert row is not None
            row.deleted_at = row.created_at
        await stack.emit(video)
        assert await stack.deliveries(video.id) == []


class TestNothingSecretIsLogged:
    async def test_secrets_and_signatures_never_reach_the_logs(
        self, callback_stack: CallbackStack, receiver: Receiver, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.DEBUG)
        stack = callback_stack
        receiver.script = [(500, {}), (302, {"location": "http://127.0.0.1:1/"})]
        caller, client = await stack.new_caller()
        video = await stack.new_video(caller, callback_url=receiver.url("/hook?token=canary-query-token"))
        await stack.emit(video)
        await stack.settle(video.id)
        async with client:
            old = (await client.get("/v1/callbacks/secret")).json()["secret"]
            new = (await client.post("/v1/callbacks/secret/rotate")).json()["secret"]

        assert len(receiver.requests) == 3
        signatures = {
            entry.split(",", 1)[1]
            for request in receiver.requests
            for entry in request.headers["webhook-signature"].split()
        }
        assert signatures and "callback" in caplog.text  # the sender did log
        for canary in [old, old.removeprefix("whsec_"), new, new.removeprefix("whsec_"), *signatures]:
            assert canary not in caplog.text
        # A receiver's token in the URL stays out of our own lines (httpx's INFO request line has the URL;
        # `configure_logging` keeps httpx at WARNING).
        ours = "\n".join(record.getMessage() for record in caplog.records if record.name.startswith("app."))
        assert "canary-query-token" not in ours and "127.0.0.1" in ours
