"""`/readyz`'s checks beyond the process answering: Postgres, the S3 bucket, the migration head.

Built once per process by the API's lifespan (`app.main`) and kept in its `AppResources`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from alembic.script import ScriptDirectory
from sqlalchemy import text

from app import migrate
from app.archive.storage import make_client as make_s3_client
from app.core.config import S3Settings
from app.core.db import Database
from app.core.errors import GatewayError

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
