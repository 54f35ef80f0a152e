"""The archive retry schedule under a fake clock (docs/reliability.md row 45): jittered, capped, never past the
deadline."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from app.archive.jobs import job_retry_delay
from app.archive.queue import ClaimedJob
from app.core import retry
from app.core.config import AuthSettings, CallbackSettings, UpstreamSettings
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
    """The archive jobs' backoff: `equal_jitter` of the attempts made so far (app/core/retry.py)."""

    @pytest.mark.parametrize("attempt", [1, 2, 3, 6, 10])
    def test_backoff_stays_between_half_and_all_of_the_capped_exponential(self, attempt: int) -> None:
        ceiling = min(120.0, 2.0 * 2 ** (attempt - 1))
        samples = [retry.equal_jitter(attempt - 1, base=2.0, cap=120.0) for _ in range(200)]
        assert all(ceiling / 2 <= sample <= ceiling for sample in samples)

    def test_backoff_is_jittered(self) -> None:
        random.seed(7)
        assert len({round(retry.equal_jitter(4, base=2.0, cap=120.0), 6) for _ in range(50)}) > 40

    def test_a_job_retries_as_it_did_before_the_strategies_had_names(self) -> None:
        """The formula app/archive/jobs.py had, draw for draw under one seed."""
        for attempts in range(0, 40):
            ceiling = min(120.0, 2.0 * (2.0 ** max(attempts - 1, 0)))
            expected = ceiling / 2 + random.Random(attempts).uniform(0, ceiling / 2)
            random.seed(attempts)
            assert job_retry_delay(job(attempts, None), base=2.0, cap=120.0, now=NOW) == expected


class TestStrategies:
    def test_capped_exponential_doubles_from_base_up_to_the_cap(self) -> None:
        steps = [retry.capped_exponential(step, base=0.5, cap=10.0) for step in range(7)]
        assert steps == [0.5, 1.0, 2.0, 4.0, 8.0, 10.0, 10.0]
        assert retry.capped_exponential(-3, base=0.5, cap=10.0) == 0.5
        assert retry.capped_exponential(10_000, base=1.0, cap=60.0) == 60.0  # no overflow

    @pytest.mark.parametrize("step", [0, 1, 2, 5, 30])
    def test_full_jitter_is_anywhere_up_to_the_ceiling(self, step: int) -> None:
        rng = random.Random(step)
        ceiling = retry.capped_exponential(step, base=0.5, cap=8.0)
        samples = [retry.full_jitter(step, base=0.5, cap=8.0, rng=rng) for _ in range(300)]
        assert all(0 <= sample <= ceiling for sample in samples)
        assert min(samples) < ceiling / 4 and max(samples) > ceiling * 3 / 4

    def test_the_upstream_client_pauses_as_it_did_before(self) -> None:
        """The formula app/upstream/client.py had (0-based attempts), draw for draw under one seed."""
        settings = UpstreamSettings()
        base, cap = settings.retry_base_seconds, settings.retry_max_seconds
        for attempt in range(12):
            before = random.Random(attempt).uniform(0, min(cap, base * (2**attempt)))
            assert retry.full_jitter(attempt, base=base, cap=cap, rng=random.Random(attempt)) == before

    def test_fixed_schedule_repeats_its_last_delay_and_only_stretches(self) -> None:
        rng = random.Random(3)
        assert [retry.fixed_schedule(n, [5.0, 60.0], jitter_ratio=0) for n in range(1, 5)] == [5.0, 60.0, 60.0, 60.0]
        stretched = [retry.fixed_schedule(2, [5.0, 60.0], jitter_ratio=0.1, rng=rng) for _ in range(200)]
        assert all(60.0 <= delay <= 66.0 for delay in stretched)
        assert len(set(stretched)) > 1

    def test_the_callbacks_schedule_is_the_configured_one(self) -> None:
        settings = CallbackSettings(retry_jitter_ratio=0)
        delays = [retry.fixed_schedule(n, settings.retry_schedule_seconds, jitter_ratio=0) for n in range(1, 8)]
        assert delays == [5, 300, 1800, 7200, 18000, 36000, 36000]

    def test_admin_lockouts_double_up_to_their_cap(self) -> None:
        """As app/auth/throttle.py computed them: first lockout, then twice as long each time, capped."""
        settings = AuthSettings()
        first, cap = settings.admin_first_lockout_seconds, settings.admin_max_lockout_seconds_per_address
        for beyond in range(1, 80):
            before = min(first * 2 ** min(beyond - 1, 64), cap)
            assert retry.capped_exponential(beyond - 1, base=first, cap=cap) == before


class TestDeadline:
    def test_without_a_deadline_the_delay_is_the_backoff(self) -> None:
        delay = job_retry_delay(job(3, None), base=2.0, cap=120.0, now=NOW)
        assert delay is not None and 4.0 <= delay <= 8.0

    def test_a_retry_is_never_scheduled_past_the_deadline(self) -> None:
        deadline = NOW + timedelta(seconds=30)
        for attempts in range(1, 12):
            delay = job_retry_delay(job(attempts, deadline), base=2.0, cap=120.0, now=NOW)
            assert delay is not None and NOW + timedelta(seconds=delay) < deadline

    def test_no_retry_once_the_window_has_closed(self) -> None:
        assert job_retry_delay(job(2, NOW - timedelta(seconds=1)), base=2.0, cap=120.0, now=NOW) is None
        assert job_retry_delay(job(2, NOW + timedelta(seconds=0.5)), base=2.0, cap=120.0, now=NOW) is None

    def test_attempts_within_one_hour_are_bounded_by_the_window(self) -> None:
        """Simulate a job failing every time inside a one-hour window: it stops at the deadline."""
        deadline = NOW + timedelta(hours=1)
        clock, attempts = NOW, 0
        while (delay := job_retry_delay(job(attempts + 1, deadline), base=2.0, cap=120.0, now=clock)) is not None:
            attempts += 1
            clock += timedelta(seconds=delay)
            assert clock < deadline
            assert attempts < 200  # bounded: halving the remaining window ends after a few dozen tries
        assert attempts > 20  # with a 2-minute cap, a failing asset is tried many times within its hour
