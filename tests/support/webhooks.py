"""Webhooks from upstream, tested on their own: a receiver app, signed deliveries as upstream sends them, and the
rows the receiver writes.

The app is built here the way `create_app` builds the gateway (error handlers, body-size middleware, the app's
resources, FastAPI's default `redirect_slashes=True`) plus the webhook router alone, so tests can build
variants: a frozen clock, a database that is down or too slow.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
from fastapi import FastAPI
from sqlalchemy import func, select
from standardwebhooks import Webhook

from app.core.body_limit import BodySizeLimit
from app.core.config import Settings
from app.core.db import Database
from app.core.error_responses import install_error_handlers
from app.core.resources import install_resources, resources_of
from app.main import open_resources
from app.models import ArchiveJob, WebhookEvent
from app.webhooks.routes import build_router
from app.webhooks.verify import Clock
from tests.support.settings import TEST_WEBHOOK_SECRET

WEBHOOK_PATH = "/webhooks/openai"


def build_receiver_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings) as resources:
            install_resources(app, resources)
            try:
                yield
            finally:
                # A test may have swapped in another database (e.g. one with a short statement timeout).
                await resources_of(app).database.dispose()

    app = FastAPI(lifespan=lifespan)
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_request_bytes)
    app.include_router(build_router(settings, clock=clock))
    return app


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[FastAPI]:
    async with app.router.lifespan_context(app):
        yield app


def client_of(app: FastAPI, *, raise_app_exceptions: bool = True) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=raise_app_exceptions)
    return httpx.AsyncClient(transport=transport, base_url="http://gateway.test")


@dataclass(frozen=True)
class Delivery:
    """One signed webhook request, as upstream would send it."""

    webhook_id: str
    event_id: str | None
    body: bytes
    headers: dict[str, str]

    def resigned(self, *, timestamp: int | None = None, secret: str = TEST_WEBHOOK_SECRET) -> Delivery:
        """The same message re-sent later: same id and body, fresh timestamp and signature."""
        return signed_delivery(
            self.body, webhook_id=self.webhook_id, event_id=self.event_id, timestamp=timestamp, secret=secret
        )

    def with_headers(self, **changes: str | None) -> dict[str, str]:
        """The headers with some replaced (`webhook_id="x"`) or removed (`webhook_id=None`)."""
        headers = dict(self.headers)
        for name, value in changes.items():
            key = name.replace("_", "-")
            if value is None:
                headers.pop(key, None)
            else:
                headers[key] = value
        return headers


def event_body(event_type: str, object_id: str, *, event_id: str | None) -> bytes:
    id_part = f'"id":"{event_id}",' if event_id is not None else ""
    return (
        f'{{{id_part}"object":"event","created_at":{int(time.time())},"type":"{event_type}",'
        f'"data":{{"id":"{object_id}"}}}}'
    ).encode()


def signed_delivery(
    body: bytes,
    *,
    webhook_id: str | None = None,
    event_id: str | None = None,
    timestamp: int | None = None,
    secret: str = TEST_WEBHOOK_SECRET,
    content_type: str = "application/json",
) -> Delivery:
    webhook_id = webhook_id or f"wh_{secrets.token_hex(16)}"
    timestamp = int(time.time()) if timestamp is None else timestamp
    signature = Webhook(secret).sign(webhook_id, datetime.fromtimestamp(timestamp, tz=UTC), body.decode())
    headers = {
        "content-type": content_type,
        "user-agent": "OpenAI/1.0 (+https://platform.openai.com/docs/webhooks)",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature,
    }
    return Delivery(webhook_id=webhook_id, event_id=event_id, body=body, headers=headers)


def video_event(
    object_id: str,
    event_type: str = "video.completed",
    *,
    event_id: str | None = None,
    timestamp: int | None = None,
    secret: str = TEST_WEBHOOK_SECRET,
) -> Delivery:
    event_id = event_id or f"evt_{secrets.token_hex(16)}"
    body = event_body(event_type, object_id, event_id=event_id)
    return signed_delivery(body, event_id=event_id, timestamp=timestamp, secret=secret)


async def post(client: httpx.AsyncClient, delivery: Delivery, *, path: str = WEBHOOK_PATH) -> httpx.Response:
    return await client.post(path, content=delivery.body, headers=delivery.headers)


@dataclass(frozen=True)
class Rows:
    """Row counts of the two tables the receiver may write."""

    events: int
    jobs: int


@dataclass(frozen=True)
class Db:
    database: Database

    async def rows(self) -> Rows:
        async with self.database.sessionmaker() as session:
            events = (await session.execute(select(func.count()).select_from(WebhookEvent))).scalar_one()
            jobs = (await session.execute(select(func.count()).select_from(ArchiveJob))).scalar_one()
            return Rows(events=events, jobs=jobs)

    async def events(self, *, webhook_id: str | None = None, event_id: str | None = None) -> list[WebhookEvent]:
        statement = select(WebhookEvent)
        if webhook_id is not None:
            statement = statement.where(WebhookEvent.webhook_id == webhook_id)
        if event_id is not None:
            statement = statement.where(WebhookEvent.event_id == event_id)
        async with self.database.sessionmaker() as session:
            return list((await session.execute(statement)).scalars().all())

    async def jobs(self, video_id: str) -> list[ArchiveJob]:
        async with self.database.sessionmaker() as session:
            statement = select(ArchiveJob).where(ArchiveJob.video_id == video_id)
            return list((await session.execute(statement)).scalars().all())


def signed(secret: str, body: Mapping[str, object]) -> tuple[bytes, dict[str, str]]:
    """`body` as JSON, with fresh Standard Webhooks headers signed with `secret` (for any profile's route)."""
    raw = json.dumps(body).encode()
    webhook_id = "wh_" + secrets.token_hex(8)
    now = datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, now, raw.decode())
    headers = {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }
    return raw, headers
