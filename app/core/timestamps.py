"""Unix-seconds timestamps (as the OpenAI contract writes every `*_at` field) and durations for people."""

from __future__ import annotations

from datetime import datetime


def unix_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def unix_seconds_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else unix_seconds(moment)


def short_duration(seconds: float | None, *, none: str = "-") -> str:
    """`95s`, `12m`, `3.5h`, `-4m` (in the past): short enough for a table cell of the CLI or the console."""
    if seconds is None:
        return none
    sign = "-" if seconds < 0 else ""
    seconds = abs(seconds)
    if seconds < 120:
        return f"{sign}{seconds:.0f}s"
    if seconds < 7200:
        return f"{sign}{seconds / 60:.0f}m"
    return f"{sign}{seconds / 3600:.1f}h"
