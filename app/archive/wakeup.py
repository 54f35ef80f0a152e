"""Waking idle workers when the API queues work: one Postgres channel, a coalesced NOTIFY from each API process and
a LISTEN in each worker (decision 014). The worker's poll stays, as the fallback for a wake-up that is lost.

Without it an idle worker finds a job queued by a webhook delivery on its next poll, on average half the poll
interval later (0.25 s at the default 0.5 s): a quarter of a 100 MiB archive's time on this kind of machine.

- **Sender (API):** `WakeUps.soon()` after a commit that queued a job that is due now. The first call sends a
  NOTIFY at once, in the background; calls while that is under way, or within `COALESCE_SECONDS` after it, make
  one more, at the end of that spell. At 1,500 deliveries/s that is about 50 NOTIFYs/s, not 1,500: a NOTIFY is a
  transaction of its own whose commit takes Postgres's one notification-queue lock, so one per delivery would
  serialize the receiver's commits. Its commit does not wait for the WAL flush: a wake-up is not worth a disk
  flush, and one lost is found by the poll. A failure to send is logged, never raised into the request.
- **Listener (worker):** one connection taken out of the pool for good (`detach`), LISTENing on `CHANNEL`.
  Every notification sets `event`. A lost connection is replaced after a short pause, and the event is set on
  every (re)connect, since notifications sent while away are gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import asyncpg
from sqlalchemy.util import greenlet_spawn

from app.archive import queue
from app.core.db import Database

logger = logging.getLogger(__name__)

CHANNEL = queue.WAKE_CHANNEL
# At most one NOTIFY per this many seconds per API process, plus the one that opens a spell.
COALESCE_SECONDS = 0.02
# A listener whose connection was lost (or could not be made) tries again after this long.
RECONNECT_SECONDS = 1.0


class WakeUps:
    """The API's side: `soon()` after queuing a job that is due now."""

    def __init__(self, database: Database, *, coalesce_seconds: float = COALESCE_SECONDS) -> None:
        self._database = database
        self._coalesce_seconds = coalesce_seconds
        self._sending: asyncio.Task[None] | None = None
        self._again = False

    def soon(self) -> None:
        if self._sending is not None and not self._sending.done():
            self._again = True
            return
        self._again = False
        self._sending = asyncio.create_task(self._send(), name="wake-workers")

    async def _send(self) -> None:
        while True:
            try:
                await queue.wake_workers(self._database)
            except Exception as exc:  # the poll finds the job all the same
                logger.warning("could not wake the workers (they will find the job on their next poll): %s", exc)
            await asyncio.sleep(self._coalesce_seconds)
            if not self._again:
                return
            self._again = False

    async def aclose(self) -> None:
        if self._sending is not None:
            self._sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sending


class WakeUpListener:
    """The worker's side: `event` is set when work may have been queued; `run()` until cancelled."""

    def __init__(self, database: Database, *, reconnect_seconds: float = RECONNECT_SECONDS) -> None:
        self._database = database
        self._reconnect_seconds = reconnect_seconds
        self.event = asyncio.Event()
        self.connection: asyncpg.Connection | None = None  # the listening connection, while there is one

    async def run(self) -> None:
        while True:
            try:
                await self._listen()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                logger.warning("wake-up listener: %s; polling only until it reconnects", exc)
            await asyncio.sleep(self._reconnect_seconds)

    async def _listen(self) -> None:
        pooled = await self._database.engine.raw_connection()
        connection: asyncpg.Connection = pooled.driver_connection
        # Ours for good: the pool neither resets it nor hands it to anyone else, and its size is freed.
        await greenlet_spawn(pooled.detach)
        lost: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def on_notify(*_: Any) -> None:
            self.event.set()

        def on_lost(_connection: Any) -> None:
            if not lost.done():
                lost.set_result(None)

        try:
            connection.add_termination_listener(on_lost)
            await connection.add_listener(CHANNEL, on_notify)
            self.connection = connection
            self.event.set()  # anything queued while no one listened is found at once
            await lost
            logger.warning("wake-up listener: connection lost; polling only until it reconnects")
        finally:
            self.connection = None
            if not connection.is_closed():
                with contextlib.suppress(Exception):
                    await asyncio.shield(connection.close(timeout=2))
            if not connection.is_closed():
                connection.terminate()
