"""The sliding-window arithmetic of the request rate (pure)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.limits import window
from app.limits.window import WindowCounts, decide

T0 = datetime(2026, 11, 25, 10, 0, 0, tzinfo=UTC)


class TestCountsAt:
    def test_same_minute_keeps_both_buckets(self) -> None:
        counts = window.counts_at(now=T0.replace(second=20), window_start=T0, current=5, previous=3)
        assert counts == WindowCounts(current=5, previous=3, elapsed_seconds=20.0)

    def test_next_minute_shifts_current_into_previous(self) -> None:
        counts = window.counts_at(now=T0.replace(minute=1, second=15), window_start=T0, current=5, previous=3)
        assert counts == WindowCounts(current=0, previous=5, elapsed_seconds=15.0)

    def test_older_buckets_count_nothing(self) -> None:
        counts = window.counts_at(now=T0.replace(minute=2), window_start=T0, current=5, previous=3)
        assert counts == WindowCounts(current=0, previous=0, elapsed_seconds=0.0)

    def test_a_window_start_inside_the_minute_is_that_minute(self) -> None:
        # A new row stores now() itself, not the minute's start.
        counts = window.counts_at(now=T0.replace(second=50), window_start=T0.replace(second=10), current=1, previous=0)
        assert counts.current == 1


class TestDecide:
    def test_admits_up_to_the_limit_within_a_minute(self) -> None:
        assert decide(WindowCounts(current=2, previous=0, elapsed_seconds=5), limit=3).allowed
        assert not decide(WindowCounts(current=3, previous=0, elapsed_seconds=5), limit=3).allowed

    def test_a_full_previous_minute_still_weighs_just_after_the_boundary(self) -> None:
        # A fixed window would admit 3 more here; the sliding estimate is 3 * 59/60 + 1 > 3.
        decision = decide(WindowCounts(current=0, previous=3, elapsed_seconds=1), limit=3)
        assert not decision.allowed
        assert decision.retry_after_seconds == 19  # 3 * (60 - 1 - t)/60 + 1 <= 3  <=>  t >= 19

    def test_retry_after_points_into_the_next_minute_when_this_one_is_full(self) -> None:
        decision = decide(WindowCounts(current=3, previous=0, elapsed_seconds=10), limit=3)
        # 50 s to the boundary, then 3 * (60 - e)/60 + 1 <= 3 needs e >= 20.
        assert decision == window.Decision(allowed=False, retry_after_seconds=70)

    @pytest.mark.parametrize(
        ("counts", "limit"),
        [
            (WindowCounts(current=0, previous=3, elapsed_seconds=1), 3),
            (WindowCounts(current=3, previous=0, elapsed_seconds=10), 3),
            (WindowCounts(current=7, previous=9, elapsed_seconds=33.3), 10),
            (WindowCounts(current=1, previous=0, elapsed_seconds=59.9), 1),
        ],
    )
    def test_waiting_retry_after_is_enough(self, counts: WindowCounts, limit: int) -> None:
        wait = decide(counts, limit=limit).retry_after_seconds
        later = counts.elapsed_seconds + wait
        if later < window.WINDOW_SECONDS:
            after = WindowCounts(current=counts.current, previous=counts.previous, elapsed_seconds=later)
        else:
            after = WindowCounts(current=0, previous=counts.current, elapsed_seconds=later - window.WINDOW_SECONDS)
        assert decide(after, limit=limit).allowed

    def test_retry_after_is_at_least_one_second(self) -> None:
        decision = decide(WindowCounts(current=0, previous=60, elapsed_seconds=59.999), limit=1)
        assert not decision.allowed and decision.retry_after_seconds >= 1
