"""The request-rate arithmetic: a sliding window over two fixed one-minute buckets. Pure, no I/O.

The estimate weighs the previous minute's count by how much of it still lies inside the last 60 s, so
a burst at the end of one minute cannot be followed by a full burst at the start of the next (a fixed
window would let through twice the limit), yet only two counters per key are kept.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta

WINDOW_SECONDS = 60.0
EPSILON = 1e-9


@dataclass(frozen=True)
class WindowCounts:
    """Admitted requests in the current and the previous minute, and how far into the current one we are."""

    current: int
    previous: int
    elapsed_seconds: float


@dataclass(frozen=True)
class Decision:
    allowed: bool
    retry_after_seconds: int = 0


def minute_of(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def counts_at(*, now: datetime, window_start: datetime, current: int, previous: int) -> WindowCounts:
    """The stored bucket pair rolled forward to `now` (a bucket older than one minute counts nothing)."""
    this_minute = minute_of(now)
    stored_minute = minute_of(window_start)
    elapsed = (now - this_minute).total_seconds()
    if stored_minute == this_minute:
        return WindowCounts(current=current, previous=previous, elapsed_seconds=elapsed)
    if stored_minute == this_minute - timedelta(minutes=1):
        return WindowCounts(current=0, previous=current, elapsed_seconds=elapsed)
    return WindowCounts(current=0, previous=0, elapsed_seconds=elapsed)


def decide(counts: WindowCounts, *, limit: int) -> Decision:
    """Admit one more request if the sliding estimate, including it, stays within `limit` per minute.

    When refused, `retry_after_seconds` is when it would be admitted if nothing else is admitted meanwhile.
    """
    remaining_weight = (WINDOW_SECONDS - counts.elapsed_seconds) / WINDOW_SECONDS
    estimate = counts.previous * remaining_weight + counts.current + 1
    if estimate <= limit + EPSILON:
        return Decision(allowed=True)
    if counts.current + 1 <= limit and counts.previous > 0:
        # Later in this minute, once enough of the previous minute has slid out.
        wait = WINDOW_SECONDS - counts.elapsed_seconds - WINDOW_SECONDS * (limit - counts.current - 1) / counts.previous
    else:
        # In the next minute, this minute's count becomes the weighted one.
        wait = (WINDOW_SECONDS - counts.elapsed_seconds) + WINDOW_SECONDS * max(
            0.0, 1 - (limit - 1) / max(counts.current, 1)
        )
    return Decision(allowed=False, retry_after_seconds=max(1, math.ceil(wait - EPSILON)))
