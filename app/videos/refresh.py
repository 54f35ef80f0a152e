"""Bounding upstream reads caused by polling: at most one refresh per video per interval, shared.

Clients poll retrieve every second (the SDK's default); without a bound, N pollers of M videos are N·M
upstream calls per second. Within one process, concurrent retrieves of the same video share one upstream
call (single flight), and a video refreshed less than `min_interval` ago is answered from Postgres. Across
processes the stored `refreshed_at` gives the same bound (checked by the service).
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

MAX_TRACKED = 10_000


class RefreshGate:
    def __init__(self, *, min_interval: float) -> None:
        self._min_interval = min_interval
        self._in_flight: dict[str, asyncio.Task[object]] = {}
        self._last: OrderedDict[str, float] = OrderedDict()

    def due(self, key: str) -> bool:
        last = self._last.get(key)
        return key in self._in_flight or last is None or time.monotonic() - last >= self._min_interval

    async def run(self, key: str, fetch: Callable[[], Awaitable[T]]) -> T:
        """Join the call in flight for `key`, or start one."""
        task = self._in_flight.get(key)
        if task is None:
            task = asyncio.ensure_future(fetch())
            self._in_flight[key] = task
            task.add_done_callback(lambda _: self._finish(key))
        # shield: one impatient client disconnecting must not cancel the call the others wait on.
        result = await asyncio.shield(task)
        return result  # type: ignore[return-value]

    def _finish(self, key: str) -> None:
        self._in_flight.pop(key, None)
        self._last[key] = time.monotonic()
        self._last.move_to_end(key)
        while len(self._last) > MAX_TRACKED:
            self._last.popitem(last=False)
