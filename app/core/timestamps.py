"""Unix-seconds timestamps, as the OpenAI contract writes every `*_at` field of its JSON."""

from __future__ import annotations

from datetime import datetime


def unix_seconds(moment: datetime) -> int:
    return int(moment.timestamp())


def unix_seconds_or_none(moment: datetime | None) -> int | None:
    return None if moment is None else unix_seconds(moment)
