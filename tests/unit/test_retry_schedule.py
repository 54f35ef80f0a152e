"""The archive retry schedule under a fake clock (catalogue row 45): jittered, capped, never past the deadline."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.archive.jobs import backoff_seconds, retry_delay
from app.archive.queue import ClaimedJob
from app.models import JobKind

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def job(attempts: int, deadline: datetime | None) -> ClaimedJob:
    return ClaimedJob(
        id=1,
        kind=JobKind.DOWNLOAD,
        video_id="video_x",
        variant="video",
        attempts=attempts,
        max_attempts=100,
        deadline=deadline,
        lease_token=uuid.uuid4(),
    )


class TestBackoff:
    @pytest.mark.parametrize("attempt", [1, 2, 3, 6, 10])
    def test_backoff_stays_between_half_and_all_of_the_capped_exponential(self, attempt: int) -> None:
        ceiling = min(120.0, 2.0 * 2 ** (attempt - 1))
        samples = [backoff_seconds(attempt, base=2.0, cap=120.0) for _ in range(200)]
        assert all(ceiling / 2 <= sample <= ceiling for sample in samples)

    def test_backoff_is_jittered(self) -> None:
        random.seed(7)
        assert len({round(backoff_seconds(5, base=2.0, cap=120.0), 6) for _ in range(50)}) > 40


class TestDeadline:
    def test_without_a_deadline_the_delay_is_the_backoff(self) -> None:
        delay = retry_delay(job(3, None), base=2.0, cap=120.0, now=NOW)
        assert delay is not None and 4.0 <= delay <= 8.0

    def test_a_retry_is_never_scheduled_past_the_deadline(self) -> None:
        deadline = NOW + timedelta(seconds=30)
        for attempts in range(1, 12):
            delay = retry_delay(job(attempts, deadline), base=2.0, cap=120.0, now=NOW)
            assert delay is not None and NOW + timedelta(seconds=delay) < deadline

    def test_no_retry_once_the_window_has_closed(self) -> None:
        assert retry_delay(job(2, NOW - timedelta(seconds=1)), base=2.0, cap=120.0, now=NOW) is None
        assert retry_delay(job(2, NOW + timedelta(seconds=0.5)), base=2.0, cap=120.0, now=NOW) is None

    def test_attempts_within_one_hour_are_bounded_by_the_window(self) -> None:
        """Simulate a job failing every time inside a one-hour window: it stops at the deadline."""
        deadline = NOW + timedelta(hours=1)
        clock, attempts = NOW, 0
        while (delay := retry_delay(job(attempts + 1, deadline), base=2.0, cap=120.0, now=clock)) is not None:
            attempts += 1
            clock += timedelta(seconds=delay)
            assert clock < deadline
            assert attempts < 200  # bounded: halving the remaining window ends after a few dozen tries
        assert attempts > 20  # with a 2-minute cap, a failing asset is tried many times within its hour
