"""A video's status: forward only (docs/reliability.md row 19: no regression out of order), and one callback per
transition.

The rules are the model's (`Video.advance`, `Video.fail`, plain values); `app.archive.lifecycle` adapts upstream's
answer to them and queues the callback. Its callback is recorded here instead of written to an outbox (the
integration tests, e.g. tests/integration/worker/test_archive_flow.py, count the real rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import cast

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import lifecycle
from app.callbacks import service as callbacks_service
from app.callbacks.service import CallbackEvent
from app.core.config import CallbackSettings
from app.models import Video, VideoStatus
from app.models.video import DELETED_BEFORE_SUBMISSION, SUBMISSION_UNKNOWN, UPSTREAM_NOT_FOUND
from app.upstream.schemas import UpstreamVideo
from tests.support.settings import make_settings

NOW = datetime(2026, 11, 25, tzinfo=UTC)
SETTINGS = make_settings("postgresql+asyncpg://nobody@127.0.0.1:1/never_connected")
# The lifecycle's callback is stubbed (`told`), so no session is ever used.
SESSION = cast(AsyncSession, object())


def video(status: str, progress: int = 0) -> Video:
    return Video(id="video_x", status=status, progress=progress, model="sora-2", size="720x1280", seconds="4")


def upstream(status: str, progress: int | None = 0, **extra: object) -> UpstreamVideo:
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


@dataclass(frozen=True)
class Told:
    video_id: str
    event: CallbackEvent


@pytest.fixture
def told(monkeypatch: pytest.MonkeyPatch) -> list[Told]:
    """The callbacks the lifecycle queued, in order."""
    queued: list[Told] = []

    async def on_video_event(
        session: AsyncSession, *, video: Video, event: CallbackEvent, settings: CallbackSettings
    ) -> None:
        queued.append(Told(video.id, event))

    monkeypatch.setattr(callbacks_service, "on_video_event", on_video_event)
    return queued


async def apply(row: Video, answer: UpstreamVideo, *, now: datetime = NOW) -> VideoStatus:
    return await lifecycle.apply_upstream(SESSION, row, answer, settings=SETTINGS, now=now)


# ----- the model's rules, plain values --------------------------------------------------------------


def advance(row: Video, status: str, *, progress: int | None = 0, now: datetime = NOW) -> VideoStatus:
    return row.advance(
        status, progress=progress, completed_at=None, expires_at=None, error_code=None, error_message=None, now=now
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
    assert advance(row, incoming) == current  # the status it had before
    assert row.status == expected
    assert row.refreshed_at == NOW


def test_progress_never_decreases() -> None:
    row = video("in_progress", progress=60)
    advance(row, "in_progress", progress=40)
    assert row.progress == 60


def test_an_unknown_status_changes_nothing_but_the_read_time() -> None:
    row = video("in_progress", progress=10)
    assert advance(row, "expired") is VideoStatus.IN_PROGRESS
    assert (row.status, row.progress, row.refreshed_at) == ("in_progress", 10, NOW)


def test_a_failure_without_a_reason_gets_a_generic_one() -> None:
    row = video("in_progress")
    advance(row, "failed")
    assert (row.status, row.error_code, row.error_message) == (
        "failed",
        "upstream_failed",
        "The render failed upstream.",
    )


def test_fail_fails_a_live_video_once_and_never_a_settled_one() -> None:
    row = video("queued")
    assert row.fail(UPSTREAM_NOT_FOUND, "gone") is True
    assert (row.status, row.error_code, row.error_message) == ("failed", "upstream_not_found", "gone")
    assert row.fail(SUBMISSION_UNKNOWN, "again") is False
    assert (row.error_code, row.error_message) == ("upstream_not_found", "gone")
    done = video("completed", progress=100)
    assert done.fail(UPSTREAM_NOT_FOUND, "gone") is False
    assert (done.status, done.error_code) == ("completed", None)


class TestSynthesizedProgress:
    """Providers that report no progress (Veo) get one from the elapsed time: forward only, never 100."""

    async def test_it_rises_with_time_never_backwards_and_stays_below_completion(self, told: list[Told]) -> None:
        row = video("queued")
        row.created_at = NOW
        seen = []
        for seconds in (0, 5, 30, 120, 600, 3600, 60):  # the last poll is "earlier": a clock step back
            await apply(row, upstream("in_progress", progress=None), now=NOW + timedelta(seconds=seconds))
            seen.append(row.progress)
        assert seen == sorted(seen)
        assert seen[1] > 0 and seen[-1] < 100
        await apply(row, upstream("completed", progress=None), now=NOW + timedelta(hours=2))
        assert row.progress == 100

    async def test_it_counts_from_the_submission_not_from_a_wait_in_line(self, told: list[Told]) -> None:
        # Admission control: accepted half an hour ago, sent upstream a second ago.
        waited = video("queued")
        waited.created_at, waited.submitted_at = NOW - timedelta(minutes=30), NOW - timedelta(seconds=1)
        direct = video("queued")
        direct.created_at = NOW - timedelta(minutes=30)
        for row in (waited, direct):
            await apply(row, upstream("in_progress", progress=None))
        assert waited.progress <= 2
        assert direct.progress == 94

    async def test_a_reported_progress_is_used_as_is(self, told: list[Told]) -> None:
        row = video("in_progress", progress=10)
        row.created_at = NOW
        await apply(row, upstream("in_progress", progress=42), now=NOW + timedelta(hours=1))
        assert row.progress == 42


# ----- the lifecycle: upstream's answer in, one callback per transition out ------------------------


async def test_completion_sets_times_and_full_progress(told: list[Told]) -> None:
    row = video("in_progress", progress=90)
    await apply(row, upstream("completed", progress=100, completed_at=1000, expires_at=4600))
    assert (row.progress, row.completed_at, row.expires_at) == (
        100,
        datetime.fromtimestamp(1000, tz=UTC),
        datetime.fromtimestamp(4600, tz=UTC),
    )
    assert told == []  # a completion's callback follows its downloads (app/archive/service.py)


async def test_failure_records_the_upstream_error_and_tells_the_caller_once(told: list[Told]) -> None:
    row = video("in_progress")
    failed = upstream("failed", error={"code": "moderation_blocked", "message": "blocked"})
    assert await apply(row, failed) is VideoStatus.IN_PROGRESS
    assert (row.status, row.error_code, row.error_message) == ("failed", "moderation_blocked", "blocked")
    assert await apply(row, failed) is VideoStatus.FAILED  # the same answer again (a poll racing the webhook)
    assert told == [Told("video_x", CallbackEvent.FAILED)]


async def test_an_unknown_status_changes_nothing(told: list[Told]) -> None:
    row = video("in_progress", progress=10)
    await apply(row, upstream("expired"))
    assert (row.status, row.progress) == ("in_progress", 10)
    assert told == []


async def test_a_settled_video_is_not_redated_by_a_later_answer(told: list[Told]) -> None:
    row = video("in_progress")
    await apply(row, upstream("completed", completed_at=1_000, expires_at=2_000))
    await apply(row, upstream("completed", completed_at=5_000, expires_at=9_000))
    assert row.expires_at == datetime.fromtimestamp(2_000, tz=UTC)


async def test_a_late_failure_after_completion_tells_nobody(told: list[Told]) -> None:
    row = video("completed", progress=100)
    await apply(row, upstream("failed", error={"code": "late", "message": "late"}))
    assert (row.status, row.error_code, told) == ("completed", None, [])


async def test_fail_tells_the_caller_only_when_it_failed_the_video(told: list[Told]) -> None:
    row = video("queued")
    assert await lifecycle.fail(SESSION, row, code=SUBMISSION_UNKNOWN, message="cut off", settings=SETTINGS)
    assert not await lifecycle.fail(SESSION, row, code=UPSTREAM_NOT_FOUND, message="gone", settings=SETTINGS)
    assert (row.status, row.error_code, row.error_message) == ("failed", SUBMISSION_UNKNOWN, "cut off")
    assert told == [Told("video_x", CallbackEvent.FAILED)]


async def test_a_failure_nobody_needs_to_hear_of_is_not_told(told: list[Told]) -> None:
    row = video("queued")
    assert await lifecycle.fail(
        SESSION, row, code=DELETED_BEFORE_SUBMISSION, message="deleted", settings=SETTINGS, notify=False
    )
    assert (row.status, row.error_code, told) == ("failed", DELETED_BEFORE_SUBMISSION, [])
