"""The API application: `create_app(settings)` wires settings, database, upstream client and routes.

The lifespan builds the process-wide resources (engine, httpx client, services) and disposes of them;
nothing is created at import time, so tests build as many apps as they like with their own settings.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI

from app.archive.storage import ArchiveStorage
from app.callbacks.routes import admin_router as callbacks_admin_router
from app.callbacks.routes import router as callbacks_router
from app.core.access_log import AccessLog
from app.core.config import Settings
from app.core.db import Database
from app.core.errors import install_error_handlers
from app.core.limits import BodySizeLimit
from app.idempotency.middleware import install as install_idempotency
from app.limits.routes import router as limits_router
from app.upstream.router import UpstreamRouter
from app.videos.routes import router as videos_router
from app.videos.service import VideoService
from app.webhooks.routes import build_router as build_webhook_router
from app.webhooks.verify import check_secrets


def create_app(settings: Settings, *, upstream_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway API. `upstream_transport` lets tests route upstream calls to an in-process app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        database = Database.connect(settings.db)
        upstreams = UpstreamRouter(settings, transport=upstream_transport)
        storage = ArchiveStorage(settings.s3)
        app.state.settings = settings
        app.state.database = database
        app.state.upstreams = upstreams
        app.state.video_service = VideoService(settings=settings, upstreams=upstreams, storage=storage)
        try:
            yield
        finally:
            await upstreams.aclose()
            storage.close()
            await database.dispose()

    app = FastAPI(
        title="Video Gateway",
        version="0.1.0",
        summary="OpenAI-compatible /v1/videos facade with signed webhooks and an S3 archive.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_request_bytes)
    app.add_middleware(AccessLog)
    app.include_router(videos_router)
    app.include_router(callbacks_router)
    app.include_router(callbacks_admin_router)
    app.include_router(limits_router)
    install_idempotency(app, settings)
    if settings.webhooks.enabled:
        # Fail closed: no webhook endpoint without a usable whsec_ secret.
        check_secrets(settings.webhooks.secret_list())
        app.include_router(build_webhook_router(settings))
    for name, profile in settings.upstreams.items():
        if profile.sends_webhooks:
            check_secrets(profile.webhook_secret_list())
            app.include_router(
                build_webhook_router(
                    settings, profile=name, verify_with=profile.webhook_secret_list(), path=f"/webhooks/{name}"
                )
            )

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz", tags=["operations"], summary="Readiness: Postgres answers")
    async def readyz() -> dict[str, str]:
        database: Database = app.state.database
        await database.ping()
        return {"status": "ready"}

    return app
