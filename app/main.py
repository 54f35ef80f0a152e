"""The API application: `create_app(settings)` wires settings, database, upstream client and routes.

The lifespan builds the process-wide resources (engine, httpx client, services) and disposes of them;
nothing is created at import time, so tests build as many apps as they like with their own settings.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

import httpx
from alembic.script import ScriptDirectory
from fastapi import FastAPI
from fastapi.responses import Response
from sqlalchemy import text

from app import migrate
from app.archive import queue
from app.archive.storage import ArchiveStorage
from app.archive.storage import make_client as make_s3_client
from app.auth.deps import install as install_auth
from app.callbacks.routes import admin_router as callbacks_admin_router
from app.callbacks.routes import router as callbacks_router
from app.characters.routes import router as characters_router
from app.characters.service import CharacterService
from app.console.routes import install as install_console
from app.core import metrics
from app.core.access_log import AccessLog
from app.core.config import S3Settings, Settings
from app.core.db import Database
from app.core.errors import GatewayError, install_error_handlers
from app.core.limits import BodySizeLimit
from app.idempotency.middleware import install as install_idempotency
from app.limits.routes import router as limits_router
from app.models import JobState
from app.upstream.router import UpstreamRouter
from app.videos.routes import router as videos_router
from app.videos.service import VideoService
from app.webhooks.kinds import check_profile_secrets
from app.webhooks.routes import build_router as build_webhook_router
from app.webhooks.verify import check_secrets

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

logger = logging.getLogger(__name__)

# Each readiness check, and the queue-depth read of /metrics, gets at most this long.
CHECK_TIMEOUT_SECONDS: Final = 2.0


class NotReady(GatewayError):
    """A readiness check failed; `param` names the failed checks (postgres, s3, migrations)."""

    status_code = 503
    type = "server_error"
    code = "not_ready"


@dataclass(frozen=True)
class Readiness:
    """What /readyz checks beyond the database: the bucket (own short-timeout client), the migration head."""

    s3_settings: S3Settings
    s3_client: S3Client
    migrations_head: str | None  # read once from the scripts at start; None when they cannot be found

    @classmethod
    def build(cls, settings: S3Settings) -> Readiness:
        return cls(settings, _probe_client(settings), _script_head())

    async def failures(self, database: Database) -> dict[str, str]:
        """Check name → why it failed, in words that never carry a URL, a key or a server's message."""
        results = await asyncio.gather(
            _check(database.ping()),
            _check(asyncio.to_thread(self.s3_client.head_bucket, Bucket=self.s3_settings.bucket)),
            _check(self._migrations_at_head(database)),
        )
        return {name: why for name, why in zip(("postgres", "s3", "migrations"), results, strict=True) if why}

    async def _migrations_at_head(self, database: Database) -> None:
        if self.migrations_head is None:
            raise LookupError("the migration scripts were not found")
        async with database.engine.connect() as connection:
            current = (await connection.execute(text("SELECT version_num FROM alembic_version"))).scalars().all()
        if current != [self.migrations_head]:
            raise LookupError(f"the database is at {','.join(current) or 'no revision'}, not {self.migrations_head}")


def _probe_client(settings: S3Settings) -> S3Client:
    """A client for readiness only: one attempt and short timeouts (the archive's client retries for longer)."""
    return make_s3_client(
        settings, connect_timeout=CHECK_TIMEOUT_SECONDS, read_timeout=CHECK_TIMEOUT_SECONDS, max_attempts=1
    )


def _script_head() -> str | None:
    try:
        return ScriptDirectory.from_config(migrate.alembic_config("")).get_current_head()
    except Exception as exc:  # a packaging mistake: /readyz says so rather than the app failing to start
        logger.error("migration scripts not readable: %s", type(exc).__name__)
        return None


async def _check(probe: Awaitable[object]) -> str | None:
    """None when `probe` succeeds in time, else a short reason: our own words, or only the error's type
    (a driver's message can quote a URL or a credential)."""
    try:
        await asyncio.wait_for(probe, timeout=CHECK_TIMEOUT_SECONDS)
    except TimeoutError:
        return f"no answer within {CHECK_TIMEOUT_SECONDS:g} s"
    except LookupError as exc:
        return str(exc)
    except Exception as exc:
        return f"unreachable ({type(exc).__name__})"
    return None


def create_app(settings: Settings, *, upstream_transport: httpx.AsyncBaseTransport | None = None) -> FastAPI:
    """The gateway API. `upstream_transport` lets tests route upstream calls to an in-process app."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # First: a configuration its adapters refuse (VG_FALLBACKS) stops the start before anything is opened.
        upstreams = UpstreamRouter(settings, transport=upstream_transport)
        database = Database.connect(settings.db)
        storage = ArchiveStorage(settings.s3)
        app.state.settings = settings
        app.state.database = database
        app.state.upstreams = upstreams
        app.state.video_service = VideoService(settings=settings, upstreams=upstreams, storage=storage)
        app.state.character_service = CharacterService(upstreams=upstreams)
        app.state.archive_storage = storage  # the console's presigned URLs
        app.state.readiness = Readiness.build(settings.s3)
        try:
            yield
        finally:
            app.state.readiness.s3_client.close()
            await upstreams.aclose()
            storage.close()
            await database.dispose()

    # Swagger UI and ReDoc are pages that load their scripts and styles from a public CDN (jsDelivr): outside
    # dev mode that is third-party code in our origin and a request to the internet per visit, so they are
    # not served. `/openapi.json` stays in every mode: our own JSON (as `openapi.yaml`), read by tooling.
    docs_pages = settings.is_dev
    app = FastAPI(
        title="Video Gateway",
        version="0.1.0",
        summary="OpenAI-compatible /v1/videos facade with signed webhooks and an S3 archive.",
        lifespan=lifespan,
        docs_url="/docs" if docs_pages else None,
        redoc_url="/redoc" if docs_pages else None,
    )
    install_error_handlers(app)
    install_auth(app, settings)
    app.add_middleware(BodySizeLimit, max_bytes=settings.api.max_request_bytes)
    # Before the videos' routes: `/v1/videos/characters/{id}` must not be read as a video's sub-resource.
    app.include_router(characters_router)
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

    # After every receiver route, so the console's webhook tap sees the paths they were mounted at.
    install_console(app, settings)

    @app.get("/healthz", tags=["operations"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    # Added last, so outermost of ours: the idempotency middleware's lines carry the request id too.
    app.add_middleware(AccessLog, routes=app.router.routes)

    # The summary and the 200 schema stay as they were (openapi.yaml); a failed check is a 503 `not_ready`.
    @app.get("/readyz", tags=["operations"], summary="Readiness: Postgres answers")
    async def readyz() -> dict[str, str]:
        failures = await app.state.readiness.failures(app.state.database)
        if failures:
            raise NotReady(
                "Not ready: " + "; ".join(f"{name}: {why}" for name, why in failures.items()),
                param=",".join(failures),
                headers={"Retry-After": "5"},
            )
        return {"status": "ready"}

    @app.get("/metrics", tags=["operations"], summary="Prometheus metrics (text exposition)", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        await _refresh_queue_depth(app.state.database)
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
