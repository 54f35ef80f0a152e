"""`make bench-smoke` and a very short soak, as the suite runs them: the benchmarks still run end to end.

Nothing here is timed: the figures of a smoke run measure nothing on tiny sizes. What is asserted is that
every benchmark ran, produced positive figures beside its baseline, and that the correctness checks built
into the benchmarks (no valid webhook lost, nothing missed, every soak invariant) held.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench import instructions
from bench.report import rows_of

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]


def run_bench(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def positive(summary: dict[str, Any]) -> bool:
    count: int = summary["n"]
    smallest: float = summary["min"]
    return count >= 1 and smallest > 0


# Every benchmark builds its own stacks, one after another: on a busy 2-core machine the whole smoke run
# outlasts the suite's default 300 s; `run_bench` gives up at 600 s first.
@pytest.mark.timeout(660)
def test_every_benchmark_runs_on_a_tiny_size(tmp_path: Path) -> None:
    done = run_bench("run", "--smoke", "--out", str(tmp_path), timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    [path] = list(tmp_path.glob("*.json"))
    result = json.loads(path.read_text())
    assert result["smoke"] is True
    assert result["errors"] == {}
    benchmarks = result["benchmarks"]
    assert set(benchmarks) == {"archive", "ingest", "burst", "facade", "burst_gemini"}

    sizes = benchmarks["archive"]["sizes"]
    assert len(sizes) == 3
    for entry in sizes.values():
        for figure in ("gateway_mb_s", "pipe_mb_s", "ratio", "worker_rss_mib"):
            assert positive(entry["summary"][figure]), (entry["label"], figure)
    flat = benchmarks["archive"]["rss_flat"]
    assert len(flat["medians_mib"]) == 3 and flat["growth"] >= 0 and flat["flat"] == (flat["growth"] <= 0.05)

    ingest = benchmarks["ingest"]
    assert positive(ingest["summary"]["gateway_rps"]) and positive(ingest["summary"]["baseline_rps"])
    assert ingest["no_valid_delivery_lost"] is True
    steps = ingest["raw"][0]["gateway"]
    assert all(step["server_errors"] == 0 for step in steps)
    assert all(step["recorded"]["valid_answered"] > 0 and step["recorded"]["ok"] for step in steps)
    # 5 % of the pool is badly signed: some were refused, and none was recorded.
    assert sum(step["unauthorized"] for step in steps) > 0
    assert all(step["recorded"]["bad_recorded"] == 0 for step in steps)
    # The verify + INSERT baseline: measured the same way, and durable too (what it acknowledged is in its table).
    assert positive(ingest["summary"]["insert_rps"]) and positive(ingest["summary"]["insert_ratio"])
    assert ingest["insert_lost_nothing"] is True
    assert all(step["recorded"]["valid_answered"] > 0 for step in ingest["raw"][0]["insert"])
    # Measured again with history in the database: the gateway and the verify + INSERT endpoint.
    history = ingest["history"]
    assert history["fill"]["written"]["videos"] == history["rows"] > 0
    assert history["fill"]["written"]["bench_ingest_baseline"] == history["rows"]
    assert positive(history["summary"]["gateway_rps"]) and positive(history["summary"]["insert_rps"])
    assert history["no_valid_delivery_lost"] is True and history["insert_lost_nothing"] is True
    assert set(history["change_percent"]) >= {"gateway_rps", "insert_rps"}

    burst = benchmarks["burst"]
    assert positive(burst["summary"]["gateway_seconds"]) and positive(burst["summary"]["pipe_seconds"])
    assert burst["summary"]["missed_deadlines"]["max"] == 0
    assert burst["raw"][0]["assets"] == 3 * burst["videos"]
    assert burst["raw"][0]["webhooks_seen"] == burst["videos"]
    # The same burst with each number of workers (1 and 2 in the smoke run), each beside its pipe.
    assert set(burst["by_workers"]) == {"1", "2"} and burst["workers"] == 2
    for count, entry in burst["by_workers"].items():
        assert positive(entry["summary"]["videos_per_s"]) and positive(entry["summary"]["pipe_videos_per_s"]), count
        assert entry["summary"]["missed_deadlines"]["max"] == 0, count
        assert entry["raw"][0]["assets"] == 3 * burst["videos"], count
    assert burst["scaling"]["1"] == 1.0

    # Veo through the Gemini simulator: the MP4 archived and the two images derived from it, for every video.
    gemini = benchmarks["burst_gemini"]
    for figure in ("gateway_seconds", "pipe_seconds", "derive_share", "derive_job_p50_s"):
        assert positive(gemini["summary"][figure]), figure
    assert gemini["summary"]["missed_deadlines"]["max"] == 0
    assert gemini["raw"][0]["assets"] == 3 * gemini["videos"]
    assert gemini["raw"][0]["webhooks_seen"] == gemini["videos"]
    assert gemini["raw"][0]["job_seconds"]["derive spritesheet"]["n"] >= gemini["videos"]

    facade = benchmarks["facade"]
    for figure in ("gateway_retrieve_p50_ms", "direct_retrieve_p50_ms", "gateway_content_mb_s", "s3_content_mb_s"):
        assert positive(facade["summary"][figure]), figure
    # The bare key check + row read, and the retrieve and list again with history in the database.
    for figure in ("bare_retrieve_p50_ms", "bare_list_p50_ms", "retrieve_vs_bare", "list_vs_bare"):
        assert positive(facade["summary"][figure]), figure
        assert positive(facade["history"]["summary"][figure]), figure
    assert facade["history"]["fill"]["written"]["assets"] == 3 * facade["history"]["rows"]

    # The table shows the new baselines and the history beside the empty database.
    figures = {figure for _, figure, _, _ in rows_of(benchmarks)}
    assert "ratio to verify + INSERT" in figures and "retrieve ratio to bare" in figures
    assert any(figure.endswith("rows of history: change of retrieve p50 vs empty database") for figure in figures)
    assert any(figure.startswith("worker peak RSS flat") for figure in figures)
    assert any(figure.startswith("scaling:") for figure in figures)

    # Every goal was evaluated (met or not: a smoke run measures nothing).
    assert len(result["goals"]) >= 12
    assert result["git"]["commit"]


def test_a_short_soak_keeps_every_invariant(tmp_path: Path) -> None:
    done = run_bench("soak", "--minutes", "0.5", "--renders", "30", "--out", str(tmp_path), timeout=600)
    written = list(tmp_path.glob("soak-*.json"))
    # No results at all: the soak itself broke; what it printed says where.
    assert len(written) == 1, f"exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    [path] = written
    result = json.loads(path.read_text())
    assert done.returncode == (0 if result["ok"] else 1)
    assert result["renders_created"] == 30
    assert result["invariants"], result
    failed = {name: check["detail"] for name, check in result["invariants"].items() if not check["ok"]}
    assert failed == {}
    assert result["faults"]["workers SIGKILLed"] >= 0


@pytest.mark.parametrize("path", ["delivery", "retrieve", "list", "floor"])
async def test_the_instruction_counts_requests_are_answered(database_url: str, path: str) -> None:
    """`python -m bench.instructions` counts requests that must each be answered 200 (it stops otherwise); the
    counting itself needs valgrind and minutes, so here the requests run without it."""
    seeded = await instructions.seed(database_url)
    await instructions.send_requests(path, 3, database_url, seeded)
