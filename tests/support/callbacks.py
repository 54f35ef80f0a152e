"""Callbacks to callers, tested for real: a raw HTTP receiver on 127.0.0.1 that records what it gets, and a gateway
stack (`make_stack`, `callback_stack` fixtures) with helpers to drive the outbox.

The receiver is a small asyncio HTTP/1.1 server (no framework): it records every request exactly as it
arrived (headers and raw body) and answers from a script of statuses, so tests can make it fail, redirect
or stall, and check what was sent, to whom, and how it was signed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field
from typing import Any

import httpx
from fastapi import FastAPI
from sqlalchemy import select, update

from app.callbacks import delivery, service
from app.callbacks.service import CallbackEvent
from app.core.config import CallbackSettings, S3Settings, Settings
from app.core.db import Database
from app.models import Asset, CallbackAttempt, CallbackDelivery, Video, VideoStatus
from tests.support.factories import MadeCaller, make_caller, make_video
from tests.support.gateway import gateway_client
from tests.support.settings import make_settings


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float = field(default_factory=time.monotonic)


@dataclass
class Receiver:
    """Answers each request with the next scripted `(status, headers)`, then `default` once the script is used."""

    port: int = 0
    requests: list[Received] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    default: tuple[int, dict[str, str]] = (204, {})
    stall_seconds: float = 0.0

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def to(self, path: str) -> list[Received]:
        return [request for request in self.requests if request.path == path]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            request_line = (await reader.readline()).decode("latin-1").rstrip("\r\n")
            if not request_line:
                return
            method, path, _ = request_line.split(" ", 2)
            headers: dict[str, str] = {}
            while (line := (await reader.readline()).decode("latin-1").rstrip("\r\n")) != "":
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.requests.append(Received(method, path, headers, body))
            if self.stall_seconds:
                await asyncio.sleep(self.stall_seconds)
            status, extra = self.script.pop(0) if self.script else self.default
            head = [f"HTTP/1.1 {status} X", "content-length: 0", "connection: close"]
            head += [f"{name}: {value}" for name, value in extra.items()]
            writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()


def callback_settings(**overrides: Any) -> CallbackSettings:
    values: dict[str, Any] = {
        "allowed_destinations": ["127.0.0.1/32"],
        "timeout_seconds": 2.0,
        "max_attempts": 3,
        "retry_schedule_seconds": [0.3, 0.6],
        "retry_jitter_ratio": 0.0,
    }
    return CallbackSettings(**{**values, **overrides})


@dataclass(frozen=True)
class SenderContext:
    """What `deliver_due` needs; the worker passes its JobContext, which has the same two attributes."""

    settings: Settings
    database: Database


@dataclass
class CallbackStack:
    settings: Settings
    app: FastAPI
    database: Database
    callers: list[uuid.UUID] = field(default_factory=list)

    @property
    def context(self) -> SenderContext:
        return SenderContext(self.settings, self.database)

    async def new_caller(self) -> tuple[MadeCaller, httpx.AsyncClient]:
        """A caller of this stack (its pending deliveries are cancelled at the end) and a client with its key."""
        caller = await make_caller(self.database)
        self.callers.append(caller.id)
        return caller, gateway_client(self.app, caller.key)

    async def new_video(
        self,
        caller: MadeCaller,
        *,
        callback_url: str | None,
        status: VideoStatus = VideoStatus.COMPLETED,
        metadata: dict[str, str] | None = None,
        archived: bool = True,
    ) -> Video:
        """A settled video of `caller` with its callback URL; `archived`: its video file is in the archive."""
        async with self.database.sessionmaker.begin() as session:
            video = await make_video(
                session,
                caller=caller,
                upstream_id=None,
                status=status,
                size="1280x720",
                prompt="a callback",
                progress=100,
                callback_url=callback_url,
                caller_metadata=metadata,
            )
            if archived:
                session.add(Asset(video_id=video.id, variant="video", state="archived", bytes=1234, sha256="ab" * 32))
        return video

    async def emit(self, video: Video, event: CallbackEvent = CallbackEvent.ARCHIVED) -> None:
        """What the archive does when the video settles: the hook, inside a committed transaction."""
        async with self.database.sessionmaker.begin() as session:
            current = await session.get(Video, video.id)
            assert current is not None
            await service.on_video_event(session, video=current, event=event, settings=self.settings.callbacks)

    async def cancel_pending(self) -> None:
        """The outbox is shared by the run's database: leave nothing due for the next test's sender."""
        if not self.callers:
            return
        async with self.database.sessionmaker.begin() as session:
            await session.execute(
                update(CallbackDelivery)
                .where(CallbackDelivery.caller_id.in_(self.callers), CallbackDelivery.state == "pending")
                .values(state="cancelled")
            )

    async def deliveries(self, video_id: str) -> list[CallbackDelivery]:
        async with self.database.sessionmaker() as session:
            statement = select(CallbackDelivery).where(CallbackDelivery.video_id == video_id)
            return list((await session.execute(statement.order_by(CallbackDelivery.id))).scalars().all())

    async def attempts(self, video_id: str) -> list[CallbackAttempt]:
        async with self.database.sessionmaker() as session:
            statement = (
                select(CallbackAttempt)
                .join(CallbackDelivery, CallbackDelivery.id == CallbackAttempt.delivery_id)
                .where(CallbackDelivery.video_id == video_id)
                .order_by(CallbackAttempt.id)
            )
            return list((await session.execute(statement)).scalars().all())

    async def deliver_until(self, done: Callable[[], bool], *, within: float = 30.0) -> None:
        """Run the sender as the worker's ticks would, until `done()` (or fail after `within` seconds)."""
        deadline = time.monotonic() + within
        while not done():
            if time.monotonic() > deadline:
                raise AssertionError("the callback was not delivered in time")
            await delivery.deliver_due(self.context)
            await asyncio.sleep(0.02)

    async def settle(self, video_id: str, *, within: float = 30.0) -> list[CallbackDelivery]:
        """Run the sender until none of the video's deliveries is pending."""
        deadline = time.monotonic() + within
        while True:
            rows = await self.deliveries(video_id)
            if rows and all(row.state != "pending" for row in rows):
                return rows
            if time.monotonic() > deadline:
                raise AssertionError(f"deliveries still pending: {[(r.state, r.attempts) for r in rows]}")
            await delivery.deliver_due(self.context)
            await asyncio.sleep(0.02)


def stack_settings(database_url: str, s3: S3Settings, callbacks: CallbackSettings) -> Settings:
    return make_settings(database_url).model_copy(update={"s3": s3, "callbacks": callbacks})


# `async with make_stack(callback_settings(...)) as stack:` (the `make_stack` fixture)
StackFactory = Callable[[CallbackSettings], AbstractAsyncContextManager[CallbackStack]]
