"""Synthetic MP4 layout, list paging, progress maths and the fault countdowns."""

from __future__ import annotations

import struct

import pytest

from app.simulator.errors import SimulatorError
from app.simulator.faults import Faults
from app.simulator.render import FTYP_BOX, iter_synthetic_mp4, synthetic_mp4_header
from app.simulator.state import VideoRecord, VideoStore


class TestSyntheticMp4:
    @pytest.mark.parametrize("total", [0, 5, 32, 33, 39, 40, 1000, 200_000])
    def test_stream_has_exactly_the_requested_length(self, total: int) -> None:
        assert sum(len(chunk) for chunk in iter_synthetic_mp4(total, chunk_size=4096)) == total

    def test_starts_with_ftyp_then_an_mdat_box_covering_the_rest(self) -> None:
        header = synthetic_mp4_header(1000)
        assert header[4:8] == b"ftyp" and struct.unpack(">I", header[:4])[0] == 32
        assert header[:32] == FTYP_BOX
        size, box = struct.unpack(">I4s", header[32:40])
        assert (size, box) == (1000 - 32, b"mdat")

    def test_more_than_4gib_uses_a_64_bit_box_size(self) -> None:
        total = 5 * 1024**3
        header = synthetic_mp4_header(total)
        size, box, large = struct.unpack(">I4sQ", header[32:48])
        assert (size, box, large) == (1, b"mdat", total - 32)
        assert sum(len(chunk) for chunk in iter_synthetic_mp4(total, chunk_size=1024 * 1024)) == total

    def test_chunks_are_bounded(self) -> None:
        assert max(len(chunk) for chunk in iter_synthetic_mp4(1_000_000, chunk_size=4096)) <= 4096


def record(video_id: str) -> VideoRecord:
    return VideoRecord(id=video_id, model="sora-2", prompt="p", size="720x1280", seconds="4", created_at=0)


class TestVideoStorePaging:
    @pytest.fixture
    def store(self) -> VideoStore:
        store = VideoStore()
        for index in range(5):
            store.add(record(f"video_{index}"))
        return store

    def test_desc_is_newest_first_and_pages_by_after(self, store: VideoStore) -> None:
        page, more = store.page(after=None, limit=2, order="desc")
        assert ([r.id for r in page], more) == (["video_4", "video_3"], True)
        page, more = store.page(after="video_3", limit=2, order="desc")
        assert [r.id for r in page] == ["video_2", "video_1"]
        page, more = store.page(after="video_1", limit=2, order="desc")
        assert ([r.id for r in page], more) == (["video_0"], False)

    def test_asc_is_oldest_first(self, store: VideoStore) -> None:
        page, more = store.page(after="video_1", limit=10, order="asc")
        assert ([r.id for r in page], more) == (["video_2", "video_3", "video_4"], False)

    def test_limit_zero_gives_no_data_but_reports_more(self, store: VideoStore) -> None:
        assert store.page(after=None, limit=0, order="desc") == ([], True)

    def test_unknown_after_cursor_is_refused(self, store: VideoStore) -> None:
        with pytest.raises(SimulatorError) as caught:
            store.page(after="video_nope", limit=2, order="desc")
        assert caught.value.param == "after"


class TestProgress:
    def test_rises_with_time_but_stays_below_100_until_completed(self) -> None:
        video = record("v")
        assert video.progress(now=5) == 0
        video.status, video.started_at, video.render_seconds = "in_progress", 10.0, 4.0
        assert video.progress(now=11) == 25
        assert video.progress(now=30) == 99
        video.status = "completed"
        assert video.progress(now=30) == 100

    def test_all_thirteen_fields_are_present(self) -> None:
        assert set(record("v").as_video(0)) == {
            "id", "object", "model", "status", "progress", "created_at", "completed_at", "expires_at",
            "prompt", "size", "seconds", "remixed_from_video_id", "error",
        }  # fmt: skip


class TestFaultCountdowns:
    def test_content_faults_apply_only_as_often_as_asked(self) -> None:
        faults = Faults(content_html_error=True, content_faults_remaining=2)
        assert [faults.take_content_fault() for _ in range(3)] == [True, True, False]

    def test_content_faults_without_countdown_apply_every_time(self) -> None:
        faults = Faults(content_truncate_after_bytes=10)
        assert all(faults.take_content_fault() for _ in range(3))

    def test_no_content_fault_set_means_none_applies(self) -> None:
        assert Faults(content_faults_remaining=3).take_content_fault() is False

    def test_bursts_hit_only_listed_routes(self) -> None:
        faults = Faults(burst_routes=["create_video"])
        assert faults.burst_applies_to("create_video") and not faults.burst_applies_to("list_videos")
        assert Faults().burst_applies_to("list_videos")

    def test_unknown_knob_is_refused(self) -> None:
        with pytest.raises(ValueError, match="extra"):
            Faults.model_validate({"drop_everything": True})
