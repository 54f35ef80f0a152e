"""The API application: `create_app(settings)` wires settings, database, upstream client and routes.

The lifespan builds the process-wide resources (`open_resources`: engine, httpx client, services) into one
`AppResources` (app/core/resources.py) and closes them; nothing is created at import time, so tests build as
many apps as they like with their own settings. Every middleware is listed in `create_app`, in order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
from fastapi import FastAPI
from fastapi.responses import Response
from starlette.middleware import Middleware

from app.archive import queue
from app.archive.storage import ArchiveStorage
from app.archive.wakeup import WakeUps
from app.auth.key_cache import KeyCache
from app.auth.routes import router as auth_admin_router
from app.auth.throttle import AdminKeyThrottle
from app.callbacks.routes import admin_router as callbacks_admin_router
from app.callbacks.routes import router as callbacks_router
from app.characters.routes import router as characters_router
from app.characters.service import CharacterService
from app.console.routes import install as install_console
from app.console.session import SessionKeys
from app.console.tap import DeliveryLog, WebhookTap, webhook_paths
from app.core import metrics
from app.core.access_log import AccessLog
from app.core.body_limit import BodySizeLimit
from app.core.config import Settings
from app.core.db import Database
from app.core.error_responses import install_error_handlers
from app.core.resources import AppResources, install_resources, resources_of
from app.idempotency.middleware import IdempotencyMiddleware, idempotency_service
from app.limits.routes import admin_router as limits_admin_router
from app.limits.routes import router as limits_router
from app.models import JobState
from app.readiness import CHECK_TIMEOUT_SECONDS, NotReady, Readiness
from app.upstream.router import UpstreamRouter
from app.videos.routes import router as videos_router
from app.videos.service import VideoService
from app.webhooks.kinds import check_profile_secrets
from app.webhooks.routes import build_router as build_webhook_router
from app.webhooks.verify import check_secrets

logger = logging.getLogger(__name__)


@asynccontextmanager
async def open_resources(
    settings: Settings,
    *,
    upstream_transport: httpx.AsyncBaseTransport | None = None,
    deliveries: DeliveryLog | None = None,
) -> AsyncIterator[AppResources]:
    """The process-wide resources of an API app, closed on exit. `deliveries` is the log the app's
    `WebhookTap` middleware writes (made before the lifespan runs, with the middleware)."""
    # First: a configuration its adapters refuse (VG_FALLBACKS) stops the start before anything is opened.
    upstreams = UpstreamRouter(settings, transport=upstream_transport)
    database = Database.connect(settings.db)
    storage = ArchiveStorage(settings.s3)
    resources = AppResources(
        settings=settings,
        database=database,
        upstreams=upstreams,
        video_service=VideoService(settings=settings, upstreams=upstreams, storage=storage),
        character_service=CharacterService(upstreams=upstreams),
        archive_storage=storage,
        readiness=Readiness.build(settings.s3),
        admin_throttle=AdminKeyThrottle(settings.auth),
        key_cache=KeyCache(
            ttl_seconds=settings.auth.bad_key_cache_seconds,
            max_entries=settings.auth.bad_key_cache_entries,
            good_ttl_seconds=settings.auth.good_key_cache_seconds,
        ),
        console_keys=SessionKeys.from_settings(settings),
        console_deliveries=DeliveryLog() if deliveries is None else deliveries,
        wake_workers=WakeUps(database) if settings.worker.wake_on_notify else None,
    )
    try:
        yield resources
    finally:
        if resources.wake_workers is not None:
            await resources.wake_workers.aclose()
        resources.readiness.s3_client.close()
        await upstreams.aclose()
        storage.close()
        await database.dispose()


def create_app(settings: Settings, *, upstream_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway API. `upstream_transport` lets tests route upstream calls to an in-process app."""
    deliveries = DeliveryLog()  # written by the webhook tap (a middleware), read by the console's webhooks page

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with open_resources(settings, upstream_transport=upstream_transport, deliveries=deliveries) as built:
            install_resources(app, built)
            yield

    # Swagger UI and ReDoc are pages that load their scripts and styles from a public CDN (jsDelivr): outside
    # dev mode that is third-party code in our origin and a request to the internet per visit, so they are
    # not served. `/openapi.json` stays in every mode: our own JSON (as `openapi.yaml`), read by tooling.
    docs_pages = settings.is_dev
    app = FastAPI(
        title="Video Gateway",
        version="0.1.0",
        summary="OpenAI-compatible /v1/videos facade with signed webhooks and an S3 archive.",
        lifespan=lifespan,
        # FastAPI's own OpenTelemetry hooks, off: the gateway's metrics are Prometheus' (app/core/metrics.py), and
        # left on, the hooks look the providers (and the environment) up again on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False, "operation_spans": False},
        docs_url="/docs" if docs_pages else None,
        redoc_url="/redoc" if docs_pages else None,
    )
    # Every middleware of the gateway, outermost first: a request passes them top to bottom before the
    # router, and its answer bottom to top. The domains export the classes and their arguments; none adds itself.
    middleware = [
        # Outermost: a request id and one access line for every request, and the 500 of any escaped exception.
        Middleware(AccessLog, routes=app.router.routes),
        # Records what the webhook receivers answered, refusals of the layers below (413) included.
        Middleware(WebhookTap, paths=webhook_paths(settings), log=deliveries),
        # Paid POSTs with Idempotency-Key: answered from the record, or the route's answer stored before it is sent.
        Middleware(
            IdempotencyMiddleware, service=idempotency_service(settings), max_body_bytes=settings.api.max_request_bytes
        ),
        # Innermost: bodies over the limit are a 413 before any route reads them (idempotency lets them through).
        Middleware(BodySizeLimit, max_bytes=settings.api.max_request_bytes),
    ]
    for entry in reversed(middleware):  # each `add_middleware` wraps the ones added before it
        app.add_middleware(entry.cls, *entry.args, **entry.kwargs)
    install_error_handlers(app)
    # The webhook receivers first: routes are matched in order, and deliveries are the busiest path (behind
    # the API's ~30 routes, matching alone cost a tenth of a delivery's CPU). No path of theirs overlaps.
    if settings.webhooks.enabled:
        # Fail closed: no webhook endpoint without a usable whsec_ secret.
        check_secrets(settings.webhooks.secret_list())
        app.include_router(build_webhook_router(settings))
    for name, profile in settings.upstreams.items():
        if profile.sends_webhooks:
            try:
                check_profile_secrets(profile.kind, profile.webhook_secret_list())
            except ValueError as exc:
                raise ValueError(f"upstream profile {name!r}: {exc}") from None
            app.include_router(
                build_webhook_router(
                    settings,
                    profile=name,
                    verify_with=profile.webhook_secret_list(),
                    path=f"/webhooks/{name}",
                    kind=profile.kind,
                    # With the models fallbacks send it too: fal's receiver finds a video by its model's app.
                    upstream=profile.model_copy(update={"models": settings.models_rendered_by(name)}),
                )
            )
    # Before the videos' routes: `/v1/videos/characters/{id}` must not be read as a video's sub-resource.
    app.include_router(characters_router)
    app.include_router(videos_router)
    app.include_router(callbacks_router)
    app.include_router(callbacks_admin_router)
    app.include_router(limits_router)
    app.include_router(auth_admin_router)  # callers and keys, then their limits: the paths' order in openapi.yaml
    app.include_router(limits_admin_router)

    install_console(app)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # The summary and the 200 schema stay as they were (openapi.yaml); a failed check is a 503 `not_ready`.
    @app.get("/readyz", tags=["operations"], summary="Readiness: Postgres answers")
    async def readyz() -> dict[str, str]:
        resources = resources_of(app)
        failures = await resources.readiness.failures(resources.database)
        if failures:
            raise NotReady(
                "Not ready: " + "; ".join(f"{name}: {why}" for name, why in failures.items()),
                param=",".join(failures),
                headers={"Retry-After": "5"},
            )
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition)", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        await _refresh_queue_depth(resources_of(app).database)
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return app


async def _refresh_queue_depth(database: Database) -> None:
    """Queue depth is read here, in the async handler, and set on the gauge before rendering; a database
    that does not answer leaves the last values (the scrape still succeeds, with every other metric)."""
    try:
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS), database.sessionmaker() as session:
            states = await queue.job_states(session)
    except Exception as exc:
        logger.warning("queue depth not refreshed: %s", type(exc).__name__)
        return
    metrics.queue_depth(states, known=tuple(state.value for state in JobState))
