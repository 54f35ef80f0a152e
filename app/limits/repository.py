"""Every query of the `key_request_windows` table (its one repository, decision 008): a key's request counters.

What else the limits read is other tables' and so other repositories': the caller's stored limits and its row
lock (`app.auth.repository`), spend, concurrency and usage over videos (`app.videos.repository`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import Float, Uuid, bindparam, func, select, text

from app.core.db import Database
from app.core.repository import Repository
from app.models import KeyRequestWindow

# One statement per admitted request, written once (SQL text: this is the hottest statement of the API, and
# building it with SQLAlchemy's expression language on every call cost more than running it).
#
# Its commit does not wait for the WAL flush (`synchronous_commit` off, for this statement's own transaction
# only: `set_config(..., true)`, evaluated in the INSERT's source so that it runs before the commit). A counter
# is not something paid for: a Postgres crash may forget the last fraction of a second of counts, letting as
# many requests through again; every replica still reads and writes the same row, so the limit stays exact
# while Postgres runs. That saves a disk flush on every authenticated request (docs/decisions/010).
COUNT_REQUEST = text(
    """
INSERT INTO key_request_windows AS w (api_key_id, window_start, current_count, previous_count, last_request_at)
SELECT :api_key_id, date_trunc('minute', now()), 1, 0, now()
FROM (SELECT set_config('synchronous_commit', 'off', true)) AS this_transaction_only
ON CONFLICT (api_key_id) DO UPDATE SET
    window_start = date_trunc('minute', now()),
    current_count = CASE WHEN date_trunc('minute', w.window_start) = date_trunc('minute', now())
                         THEN w.current_count ELSE 0 END + 1,
    previous_count = CASE WHEN date_trunc('minute', w.window_start) = date_trunc('minute', now())
                          THEN w.previous_count
                          WHEN date_trunc('minute', w.window_start) = date_trunc('minute', now()) - interval '1 minute'
                          THEN w.current_count
                          ELSE 0 END,
    last_request_at = now()
WHERE
    -- The sliding estimate with this request: last minute's count weighed by how much of it is still inside the
    -- window, plus this minute's, plus one. The limit carries the arithmetic's slack.
    CASE WHEN date_trunc('minute', w.window_start) = date_trunc('minute', now()) THEN w.previous_count
         WHEN date_trunc('minute', w.window_start) = date_trunc('minute', now()) - interval '1 minute'
         THEN w.current_count
         ELSE 0 END
      * (:window_seconds - extract(epoch FROM now() - date_trunc('minute', now()))) / :window_seconds
    + CASE WHEN date_trunc('minute', w.window_start) = date_trunc('minute', now()) THEN w.current_count ELSE 0 END
    + 1 <= :limit
RETURNING w.api_key_id
"""
).bindparams(
    bindparam("api_key_id", type_=Uuid()),
    bindparam("limit", type_=Float()),
    bindparam("window_seconds", type_=Float()),
)


@dataclass(frozen=True)
class WindowRow:
    window_start: datetime
    current_count: int
    previous_count: int
    now: datetime


class LimitsRepository(Repository):
    # ----- request rate -------------------------------------------------------------------------

    @staticmethod
    async def count_request(
        database: Database, api_key_id: uuid.UUID, *, limit: int, window_seconds: float, slack: float
    ) -> bool:
        """Count one request against the key's sliding window if it fits under `limit`: one statement, run alone
        on the driver (decision 012: no session, no transaction around it), so it locks the key's row only
        while it runs. False: refused, nothing counted. The arithmetic is `app.limits.window.decide`'s (the
        caller passes its `window_seconds` and `slack`: a repository imports no domain module), on the
        database's clock; tests/integration/limits/test_rate_statement.py holds the two together. Run twice
        after a lost connection, it may count one request twice: harmless, the counter is not paid for.
        """
        rows = await database.fetch_alone(
            COUNT_REQUEST, {"api_key_id": api_key_id, "limit": float(limit) + slack, "window_seconds": window_seconds}
        )
        return bool(rows)

    async def read_window(self, api_key_id: uuid.UUID) -> WindowRow | None:
        """The key's counters as stored, with the database's now() (to tell a refused request when to retry)."""
        statement = select(
            KeyRequestWindow.window_start, KeyRequestWindow.current_count, KeyRequestWindow.previous_count, func.now()
        ).where(KeyRequestWindow.api_key_id == api_key_id)
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        return WindowRow(window_start=row[0], current_count=row[1], previous_count=row[2], now=row[3])

    # ----- budget periods -----------------------------------------------------------------------

    async def period_bounds(self, period: Literal["day", "month"]) -> tuple[datetime, datetime]:
        """The database's now() and the start of the current UTC day or month (no table: the database's clock)."""
        row = (await self.session.execute(select(func.now(), func.date_trunc(period, func.now(), "UTC")))).one()
        return row[0], row[1]
