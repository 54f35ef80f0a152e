"""Every query of the `key_request_windows` table (its one repository, decision 008): a key's request counters.

What else the limits read is other tables' and so other repositories': the caller's stored limits and its row
lock (`app.auth.repository`), spend, concurrency and usage over videos (`app.videos.repository`).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import Repository
from app.models import KeyRequestWindow


@dataclass(frozen=True)
class WindowRow:
    window_start: datetime
    current_count: int
    previous_count: int
    now: datetime


class LimitsRepository(Repository):
    # ----- request rate -------------------------------------------------------------------------

    async def lock_window(self, api_key_id: uuid.UUID) -> WindowRow:
        """The key's counters, created if missing, locked until the transaction ends; with the DB's now()."""
        statement = (
            insert(KeyRequestWindow)
            .values(api_key_id=api_key_id, window_start=func.now(), current_count=0, previous_count=0)
            # A no-op update, so the existing row is both locked and returned.
            .on_conflict_do_update(
                index_elements=[KeyRequestWindow.api_key_id],
                set_={"current_count": KeyRequestWindow.current_count},
            )
            .returning(
                KeyRequestWindow.window_start,
                KeyRequestWindow.current_count,
                KeyRequestWindow.previous_count,
                func.now(),
            )
        )
        row = (await self.session.execute(statement)).one()
        return WindowRow(window_start=row[0], current_count=row[1], previous_count=row[2], now=row[3])

    async def store_window(
        self, api_key_id: uuid.UUID, *, window_start: datetime, current: int, previous: int, now: datetime
    ) -> None:
        await self.session.execute(
            update(KeyRequestWindow)
            .where(KeyRequestWindow.api_key_id == api_key_id)
            .values(window_start=window_start, current_count=current, previous_count=previous, last_request_at=now)
            .execution_options(synchronize_session=False)
        )

    # ----- budget periods -----------------------------------------------------------------------

    async def period_bounds(self, period: Literal["day", "month"]) -> tuple[datetime, datetime]:
        """The database's now() and the start of the current UTC day or month (no table: the database's clock)."""
        row = (await self.session.execute(select(func.now(), func.date_trunc(period, func.now(), "UTC")))).one()
        return row[0], row[1]
