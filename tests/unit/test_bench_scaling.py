"""docs/scaling.md's model (bench/scaling.py): the figures it computes from a results dict, the newest results
winning figure by figure, and the "not measured" it says instead of a figure the results lack."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from bench import scaling


def spread(value: float) -> dict[str, float]:
    return {"min": value, "median": value, "max": value, "n": 1}


def results(
    *,
    ingest_rps: float = 500.0,
    retrieve_p50_ms: float = 5.0,
    burst: bool = True,
    one_worker: float | None = 10.0,
    finished_at: str = "2026-12-01T10:00:00+00:00",
    file: str = "bench/results/2026-12-01.json",
) -> dict[str, Any]:
    """A results file as `python -m bench run` writes it, with only what the model reads."""
    benchmarks: dict[str, Any] = {
        "ingest": {"summary": {"gateway_rps": spread(ingest_rps), "insert_rps": spread(2000.0)}},
        "facade": {"summary": {"gateway_retrieve_p50_ms": spread(retrieve_p50_ms)}},
        "archive": {
            "sizes": {
                str(100 * 2**20): {"bytes": 100 * 2**20, "summary": {"gateway_mb_s": spread(50.0)}},
            }
        },
    }
    if burst:
        entry: dict[str, Any] = {
            "summary": {"gateway_seconds": spread(50.0)},
            "raw": [{"videos": 1000, "bytes": 3_000_000_000}],
            "videos": 1000,
            "workers": 2,
            "asset_bytes": 2 * 2**20,
        }
        if one_worker is not None:
            entry["by_workers"] = {"1": {"summary": {"videos_per_s": spread(one_worker)}}}
            entry["scaling"] = {"1": 1.0, "2": 1.8, "4": 3.2}
        benchmarks["burst"] = entry
    return {
        "finished_at": finished_at,
        "git": {"commit": "0123456789abcdef", "dirty": False},
        "_file": file,
        "benchmarks": benchmarks,
    }


def test_the_inputs_are_read_from_the_results() -> None:
    inputs = scaling.gather(results())
    assert inputs.ingest_rps.value == 500.0
    assert inputs.facade_rps.value == pytest.approx(200.0)  # 1000 / 5 ms
    assert inputs.worker_1.value == 10.0
    assert inputs.scaling[2].value == pytest.approx(0.9)
    assert inputs.scaling[4].value == pytest.approx(0.8)
    assert inputs.bytes_per_render.value == 3_000_000
    assert inputs.insert_rps.value == 2000.0
    # Among many workers, one does what one worker did alone times the efficiency at the largest count measured.
    rate = inputs.worker_rate
    assert rate is not None and rate.value == pytest.approx(8.0)
    assert "`bench/results/2026-12-01.json`, commit `0123456789ab`" in inputs.ingest_rps.source


def test_doubling_the_ingest_and_facade_rates_halves_the_api_pods() -> None:
    peak = scaling.peak_rate(100_000_000)  # large enough that the floor of two pods is far away
    slow = scaling.api_pods(peak, scaling.gather(results(ingest_rps=500.0, retrieve_p50_ms=5.0)))
    fast = scaling.api_pods(peak, scaling.gather(results(ingest_rps=1000.0, retrieve_p50_ms=2.5)))
    assert slow is not None and fast is not None
    assert fast == pytest.approx(slow / 2, abs=1)


def test_worker_pods_follow_the_rate_per_worker_with_headroom() -> None:
    inputs = scaling.gather(results(one_worker=10.0))
    peak = scaling.peak_rate(10_000_000)
    # 8 videos/s per worker (10 x 0.8 at 4 workers), run at 60 % of it; the bytes need fewer.
    assert scaling.worker_pods(peak, inputs) == math.ceil(peak / (8.0 * scaling.HEADROOM))
    assert scaling.worker_pods(scaling.peak_rate(10), inputs) == scaling.MIN_PODS


def test_per_render_work_is_the_sum_of_its_stages() -> None:
    row = scaling.row(86_400, scaling.gather(results()))  # one render/s on average
    assert row.peak_renders_s == pytest.approx(scaling.PEAK_FACTOR)
    assert row.pg_writes_s == pytest.approx(scaling.PEAK_FACTOR * scaling.writes_per_render())
    assert scaling.WRITES_PER_RENDER == (
        scaling.CREATE_WRITES
        + scaling.WEBHOOK_WRITES
        + scaling.SYNC_WRITES
        + 3 * scaling.DOWNLOAD_WRITES
        + scaling.CALLBACK_WRITES
        + scaling.CLIENT_READS_PER_RENDER * scaling.READ_RATE_WINDOW_WRITES
    )
    # A 2 MiB MP4 and two small images: three PUTs.
    assert row.s3_requests_s == pytest.approx(scaling.PEAK_FACTOR * 3)
    assert row.s3_ingress_mb_s == pytest.approx(scaling.PEAK_FACTOR * 3.0)
    assert row.stored_gb_per_day == pytest.approx(86_400 * 3_000_000 / 1e9)


def test_a_longer_render_is_re_read_more_often() -> None:
    interval = scaling.RECONCILE_INTERVAL_SECONDS
    assert scaling.rereads_per_render(interval - 1) == 0
    assert scaling.writes_per_render(interval - 1) == scaling.WRITES_PER_RENDER
    assert scaling.writes_per_render(4 * interval) == scaling.WRITES_PER_RENDER + 4 * scaling.REREAD_WRITES
    assert scaling.transactions_per_render(4 * interval) == (
        scaling.TRANSACTIONS_PER_RENDER + 4 * scaling.REREAD_TRANSACTIONS
    )


def test_s3_requests_grow_with_parts_above_one_part() -> None:
    part = scaling.PART_SIZE_BYTES
    assert scaling.s3_requests_for_asset(part) == 1  # exactly one part: one PUT
    assert scaling.s3_requests_for_asset(part + 1) == 2 + 3  # two parts + create, complete, tag
    assert scaling.s3_requests_for_asset(10 * part) == 10 + 3


def test_a_missing_burst_says_not_measured_instead_of_a_figure() -> None:
    inputs = scaling.gather(results(burst=False))
    assert inputs.worker_rate is None
    entry = scaling.row(1_000_000, inputs)
    assert entry.worker_pods is None and entry.s3_requests_s is None and entry.stored_gb_per_day is None
    page = scaling.render(results(burst=False))
    table = page[page.index("## Deployment sizes") :]
    assert f"| 1,000,000 | 34.72 | 2 | {scaling.NOT_MEASURED} |" in table
    assert f"Worker pods: **{scaling.NOT_MEASURED}**" in page


def test_without_the_one_worker_burst_the_main_burst_is_used_and_flagged() -> None:
    inputs = scaling.gather(results(one_worker=None))
    assert not inputs.worker_1.measured and not inputs.scaling[2].measured
    rate = inputs.worker_rate
    assert rate is inputs.worker_derived
    assert rate.value == pytest.approx(1000 / 50.0 / 2)
    page = scaling.render(results(one_worker=None))
    assert f"| videos/s archived by 1 worker, release → last asset | **{scaling.NOT_MEASURED}** |" in page
    assert "the main burst's rate divided by its workers" in page


def test_each_figure_comes_from_the_newest_results_that_have_it() -> None:
    old_full = results(ingest_rps=400.0, one_worker=None, file="bench/results/2026-12-01.json")
    new_alone = results(
        ingest_rps=900.0,
        one_worker=12.0,
        finished_at="2026-12-02T10:00:00+00:00",
        file="bench/results/2026-12-02-burst.json",
    )
    del new_alone["benchmarks"]["ingest"]  # an `--only burst` run
    inputs = scaling.gather([old_full, new_alone])
    assert inputs.ingest_rps.value == 400.0 and "2026-12-01.json" in inputs.ingest_rps.source
    assert inputs.worker_1.value == 12.0 and "2026-12-02-burst.json" in inputs.worker_1.source


def test_smoke_results_are_never_read() -> None:
    smoke = results(ingest_rps=5.0, finished_at="2026-12-09T10:00:00+00:00")
    smoke["smoke"] = True
    assert scaling.gather([results(), smoke]).ingest_rps.value == 500.0


def test_write_doc_writes_the_page_from_a_results_directory(tmp_path: Path) -> None:
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "2026-12-01.json").write_text(json.dumps(results()))
    path = scaling.write_doc(tmp_path / "results", tmp_path / "docs")
    page = path.read_text()
    assert path.name == "scaling.md"
    assert page.startswith("# Scaling")
    assert "`2026-12-01.json`" in page  # outside the repository: the file's name
    assert f"**{scaling.writes_per_render()}**" in page
