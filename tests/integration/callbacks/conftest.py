"""A real HTTP receiver on 127.0.0.1, a gateway whose allow-list admits it, and helpers to drive the outbox.

The receiver is a small asyncio HTTP/1.1 server (no framework): it records every request exactly as it
arrived (headers and raw body) and answers from a script of statuses, so tests can make it fail, redirect
or stall, and check what was sent, to whom, and how it was signed.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update

from app.auth import service as auth_service
from app.callbacks import delivery, service
from app.callbacks.service import CallbackEvent
from app.core.config import CallbackSettings, S3Settings, Settings
from app.core.db import Database
from app.main import create_app
from app.models import Asset, CallbackAttempt, CallbackDelivery, Caller, Video, VideoStatus
from tests.conftest import make_settings
from tests.integration.conftest import gateway_client
from tests.integration.worker.conftest import archive_stack as archive_stack  # the worker tests' stack, reused
from tests.support.transports import CountingTransport


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


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver
        server.close()


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

    async def new_caller(self) -> tuple[Caller, httpx.AsyncClient]:
        async with self.database.sessionmaker.begin() as session:
            issued = await auth_service.create_caller(session, name=f"cb-{uuid.uuid4().hex[:10]}")
        self.callers.append(issued.caller.id)
        return issued.caller, gateway_client(self.app, issued.key)

    async def new_video(
        self,
        caller: Caller,
        *,
        callback_url: str | None,
        status: VideoStatus = VideoStatus.COMPLETED,
        metadata: dict[str, str] | None = None,
        archived: bool = True,
    ) -> Video:
        video = Video(
            id="video_" + uuid.uuid4().hex,
            caller_id=caller.id,
            model="sora-2",
            size="1280x720",
            seconds="4",
            prompt="a callback",
            status=status.value,
            progress=100,
            callback_url=callback_url,
            caller_metadata=metadata,
        )
        async with self.database.sessionmaker.begin() as session:
            session.add(video)
            await session.flush()
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


StackFactory = Callable[[CallbackSettings], AbstractAsyncContextManager[CallbackStack]]


@pytest.fixture(scope="session")
def make_stack(
    database_url: str, seaweedfs_s3: S3Settings, upstream_transport: CountingTransport, database: Database
) -> StackFactory:
    """A gateway app (in process, the simulator as upstream) with these callback settings."""

    @asynccontextmanager
    async def build(callbacks: CallbackSettings) -> AsyncIterator[CallbackStack]:
        settings = stack_settings(database_url, seaweedfs_s3, callbacks)
        app = create_app(settings, upstream_transport=upstream_transport)
        async with app.router.lifespan_context(app):
            stack = CallbackStack(settings, app, database)
            try:
                yield stack
            finally:
                await stack.cancel_pending()

    return build


@pytest.fixture
async def callback_stack(make_stack: StackFactory, receiver: Receiver) -> AsyncIterator[CallbackStack]:
    async with make_stack(callback_settings()) as stack:
        yield stack
