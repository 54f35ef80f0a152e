"""A real HTTP receiver on 127.0.0.1 and a gateway whose allow-list admits it (helpers: tests/support/callbacks.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from app.core.config import CallbackSettings, S3Settings
from app.core.db import Database
from app.main import create_app
from tests.support.callbacks import CallbackStack, Receiver, StackFactory, callback_settings, stack_settings
from tests.support.transports import CountingTransport


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    server = await asyncio.start_server(receiver.handle, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    async with server:
        yield receiver
        server.close()


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
