"""The pure policy of admission control (app/archive/admission.py): limits, waits, the gate's verdict."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.archive.admission import (
    CONCURRENCY_RECHECK_SECONDS,
    ESTIMATED_RENDER_SECONDS,
    MAX_LINE_WAIT_SECONDS,
    MAX_RETRY_AFTER_SECONDS,
    MIN_LINE_WAIT_SECONDS,
    WINDOW_MARGIN_SECONDS,
    Capacity,
    ProfileLimits,
    backlog_retry_after,
    command_for,
    line_wait,
    not_to_submit,
    verdict,
    window_wait,
)
from app.core.config import UpstreamSettings
from app.models import Video, VideoInput


def limits(
    *, max_rpm: int | None = None, max_concurrent: int | None = None, backlog: int = 1000, window: float = 60.0
) -> ProfileLimits:
    return ProfileLimits(max_rpm=max_rpm, max_concurrent=max_concurrent, max_backlog=backlog, window_seconds=window)


def video(**fields: object) -> Video:
    values: dict[str, object] = {
        "id": "video_1",
        "model": "sora-2",
        "size": "720x1280",
        "seconds": "4",
        "prompt": "a kite",
        "status": "queued",
        "upstream_profile": "limited",
    }
    return Video(**{**values, **fields})


class TestProfileLimits:
    def test_a_profile_without_limits_stays_on_the_direct_path(self) -> None:
        assert ProfileLimits.of(UpstreamSettings()) is None
        assert not UpstreamSettings(max_backlog=5, rate_window_seconds=2).admission_controlled

    def test_either_limit_turns_it_on(self) -> None:
        assert ProfileLimits.of(UpstreamSettings(max_rpm=5, rate_window_seconds=2)) == limits(max_rpm=5, window=2)
        assert ProfileLimits.of(UpstreamSettings(max_concurrent=3)) == limits(max_concurrent=3)

    @pytest.mark.parametrize("field", ["max_rpm", "max_concurrent", "max_backlog"])
    def test_limits_are_at_least_one(self, field: str) -> None:
        with pytest.raises(ValueError):
            UpstreamSettings.model_validate({field: 0})


class TestBacklogRetryAfter:
    def test_at_a_rate_it_is_the_time_the_line_takes_to_drain(self) -> None:
        # 10 waiting at 5 per 61 s (the window and its margin): 122 s.
        assert backlog_retry_after(10, limits(max_rpm=5)) == 122
        assert backlog_retry_after(10, limits(max_rpm=5, max_concurrent=1)) == 122

    def test_with_only_a_concurrency_cap_it_estimates_from_a_renders_length(self) -> None:
        assert backlog_retry_after(10, limits(max_concurrent=4)) == 3 * ESTIMATED_RENDER_SECONDS

    def test_it_is_bounded(self) -> None:
        assert backlog_retry_after(10**6, limits(max_rpm=1)) == MAX_RETRY_AFTER_SECONDS
        assert backlog_retry_after(1, limits(max_rpm=1000, window=0.01)) == 1


class TestWindowWait:
    def test_room_while_fewer_than_max_rpm_were_sent_in_the_window(self) -> None:
        assert window_wait([], limits(max_rpm=2)) == 0
        assert window_wait([1.0], limits(max_rpm=2)) == 0

    def test_full_window_frees_when_the_oldest_counted_create_leaves_it(self) -> None:
        # Newest first: the 3rd newest, sent 20 s ago, leaves the 61 s counted window in 41 s.
        assert window_wait([0.5, 1.0, 20.0], limits(max_rpm=3)) == pytest.approx(60 + WINDOW_MARGIN_SECONDS - 20)

    def test_no_rate_limit_never_waits(self) -> None:
        assert window_wait([0.1] * 100, limits(max_concurrent=1)) == 0


class TestLineWait:
    def test_about_until_it_is_first(self) -> None:
        # Three ahead at one create per (60 + 1) / 6 s.
        assert line_wait(3, limits(max_rpm=6)) == pytest.approx(3 * (60 + WINDOW_MARGIN_SECONDS) / 6)

    def test_bounded_both_ways(self) -> None:
        assert line_wait(10_000, limits(max_rpm=1)) == MAX_LINE_WAIT_SECONDS
        assert line_wait(1, limits(max_rpm=1000, window=0.01)) == MIN_LINE_WAIT_SECONDS
        assert line_wait(2, limits(max_concurrent=1)) == pytest.approx(2 * CONCURRENCY_RECHECK_SECONDS)


class TestVerdict:
    def test_first_in_line_with_room_goes(self) -> None:
        assert verdict(Capacity(ahead=0, in_flight=1, recent_ages=[1.0]), limits(max_rpm=2, max_concurrent=2)) is None

    def test_arrival_order_comes_first_even_with_room(self) -> None:
        wait = verdict(Capacity(ahead=2, in_flight=0, recent_ages=[]), limits(max_rpm=10))
        assert wait is not None and "2 ahead" in wait.reason
        assert wait.seconds == pytest.approx(line_wait(2, limits(max_rpm=10)))

    def test_renders_in_flight_at_the_cap_wait_a_short_recheck(self) -> None:
        wait = verdict(Capacity(ahead=0, in_flight=2, recent_ages=[]), limits(max_concurrent=2))
        assert wait is not None and "2 renders in flight" in wait.reason
        assert CONCURRENCY_RECHECK_SECONDS <= wait.seconds <= 2 * CONCURRENCY_RECHECK_SECONDS

    def test_a_full_window_waits_until_it_frees(self) -> None:
        wait = verdict(Capacity(ahead=0, in_flight=0, recent_ages=[1.0, 2.0]), limits(max_rpm=2, window=10))
        assert wait is not None
        assert wait.seconds == pytest.approx(10 + WINDOW_MARGIN_SECONDS - 2.0 + 0.05)


class TestNotToSubmit:
    def test_a_waiting_video_is_submitted(self) -> None:
        assert not_to_submit(video()) is None

    @pytest.mark.parametrize(
        ("fields", "note"),
        [
            ({"deleted_at": datetime.now(UTC)}, "deleted"),
            ({"upstream_id": "up_1"}, "already sent"),
            ({"submitted_at": datetime.now(UTC)}, "never sent twice"),
            ({"status": "failed"}, "already failed"),
        ],
    )
    def test_anything_else_is_not(self, fields: dict[str, object], note: str) -> None:
        reason = not_to_submit(video(**fields))
        assert reason is not None and note in reason

    def test_no_video_is_not(self) -> None:
        assert not_to_submit(None) == "no such video"


class TestCommandFor:
    def test_the_create_as_accepted(self) -> None:
        command = command_for(video(), None)
        assert (command.prompt, command.model, command.seconds, command.size, command.image) == (
            "a kite",
            "sora-2",
            "4",
            "720x1280",
            None,
        )

    def test_with_its_waiting_image(self) -> None:
        stored = VideoInput(
            video_id="video_1", image=b"\x89PNG", content_type="image/png", filename="a.png", width=720, height=1280
        )
        image = command_for(video(), stored).image
        assert image is not None
        assert (image.data, image.content_type, image.filename, image.width, image.height) == (
            b"\x89PNG",
            "image/png",
            "a.png",
            720,
            1280,
        )
