"""Folding upstream state into our row: forward only (docs/reliability.md row 19: no regression out of order)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.models import Video
from app.upstream.schemas import UpstreamVideo
from app.videos.state import apply_upstream_state

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def video(status: str, progress: int = 0) -> Video:
    return Video(id="video_x", status=status, progress=progress, model="sora-2", size="720x1280", seconds="4")


def upstream(status: str, progress: int = 0, **extra: object) -> UpstreamVideo:
    return UpstreamVideo.model_validate(
        {
            "id": "up",
            "model": "sora-2",
            "status": status,
            "progress": progress,
            "created_at": 1,
            "size": "720x1280",
            "seconds": "4",
            **extra,
        }
    )


@pytest.mark.parametrize(
    ("current", "incoming", "expected"),
    [
        ("queued", "in_progress", "in_progress"),
        ("in_progress", "completed", "completed"),
        ("in_progress", "queued", "in_progress"),
        ("completed", "failed", "completed"),
        ("failed", "completed", "failed"),
        ("completed", "in_progress", "completed"),
    ],
)
def test_status_only_moves_forward(current: str, incoming: str, expected: str) -> None:
    row = video(current)
    apply_upstream_state(row, upstream(incoming), now=NOW)
    assert row.status == expected
    assert row.refreshed_at == NOW


def test_progress_never_decreases() -> None:
    row = video("in_progress", progress=60)
    apply_upstream_state(row, upstream("in_progress", progress=40), now=NOW)
    assert row.progress == 60


def test_completion_sets_times_and_full_progress() -> None:
    row = video("in_progress", progress=90)
    apply_upstream_state(row, upstream("completed", progress=100, completed_at=1000, expires_at=4600), now=NOW)
    assert (row.progress, row.completed_at, row.expires_at) == (
        100,
        datetime.fromtimestamp(1000, tz=UTC),
        datetime.fromtimestamp(4600, tz=UTC),
    )


def test_failure_records_the_upstream_error() -> None:
    row = video("in_progress")
    apply_upstream_state(row, upstream("failed", error={"code": "moderation_blocked", "message": "blocked"}), now=NOW)
    assert (row.status, row.error_code, row.error_message) == ("failed", "moderation_blocked", "blocked")


def test_an_unknown_status_changes_nothing() -> None:
    row = video("in_progress", progress=10)
    apply_upstream_state(row, upstream("expired"), now=NOW)
    assert (row.status, row.progress) == ("in_progress", 10)


class TestSynthesizedProgress:
    """Providers that report no progress (Veo) get one from the elapsed time: forward only, never 100."""

    def test_it_rises_with_time_never_backwards_and_stays_below_completion(self) -> None:
        row = video("queued")
        row.created_at = NOW
        seen = []
        for seconds in (0, 5, 30, 120, 600, 3600, 60):  # the last poll is "earlier": a clock step back
            apply_upstream_state(row, upstream("in_progress", progress=None), now=NOW + timedelta(seconds=seconds))
            seen.append(row.progress)
        assert seen == sorted(seen)
        assert seen[1] > 0 and seen[-1] < 100
        apply_upstream_state(row, upstream("completed", progress=None), now=NOW + timedelta(hours=2))
        assert row.progress == 100

    def test_it_counts_from_the_submission_not_from_a_wait_in_line(self) -> None:
        # Admission control: accepted half an hour ago, sent upstream a second ago.
        waited = video("queued")
        waited.created_at, waited.submitted_at = NOW - timedelta(minutes=30), NOW - timedelta(seconds=1)
        direct = video("queued")
        direct.created_at = NOW - timedelta(minutes=30)
        for row in (waited, direct):
            apply_upstream_state(row, upstream("in_progress", progress=None), now=NOW)
        assert waited.progress <= 2
        assert direct.progress == 94

    def test_a_reported_progress_is_used_as_is(self) -> None:
        row = video("in_progress", progress=10)
        row.created_at = NOW
        apply_upstream_state(row, upstream("in_progress", progress=42), now=NOW + timedelta(hours=1))
        assert row.progress == 42

    def test_a_settled_video_is_not_redated_by_a_later_answer(self) -> None:
        row = video("in_progress")
        apply_upstream_state(row, upstream("completed", completed_at=1_000, expires_at=2_000), now=NOW)
        apply_upstream_state(row, upstream("completed", completed_at=5_000, expires_at=9_000), now=NOW)
        assert row.expires_at == datetime.fromtimestamp(2_000, tz=UTC)
