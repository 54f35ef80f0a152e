"""What a run leaves behind: the goals checked, one table on the terminal, the JSON, the plots and the doc.

`docs/benchmarks.md` is generated from the newest `bench/results/<date>.json` and `soak-<date>.json`, plus
the hand-written analysis in `bench/analysis.md` (what limits each missed goal, from the profiles), so the
figures in the doc are always the ones a command produced. A benchmark of `OWN_SECTIONS` run alone
(`--only NAME`, `bench/results/<date>-NAME.json`) gets a section of its own when that run is newer than the
full run or the full run lacks it.
"""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from bench.scaling import write_doc as write_scaling_doc

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = ROOT / "bench" / "results"
DOCS_DIR = ROOT / "docs"
PLOTS_DIR = DOCS_DIR / "benchmarks"
ANALYSIS = ROOT / "bench" / "analysis.md"
# Benchmarks whose `--only` runs are shown in the doc, in a section of their own (the full run's table keeps
# its own figures): the burst through the Gemini simulator takes long enough to be run on its own.
OWN_SECTIONS = ("burst_gemini",)
PACKAGES = ("uvicorn", "fastapi", "starlette", "httpx", "boto3", "botocore", "s3transfer", "asyncpg", "sqlalchemy")


# What each figure is measured against: written into the doc above the results (kept here, so a regenerated doc
# keeps it). One paragraph per line.
METHOD = [
    "## Method: what each figure is measured against",
    "",
    "Each benchmark builds its own stack (a throwaway database on the local Postgres, a private SeaweedFS, the "
    "simulator, the API and its workers) and measures, in the same run and on the same stack, a baseline that does "
    "the least the same job needs. The goals are ratios to these baselines, so a loaded machine moves both sides.",
    "",
    "- **1 archive**: one synthetic asset per size (100 MiB, 1 GiB, 4 GiB), from its first webhook to `archived`, "
    "against the shortest honest pipe (`bench/pipe.py`: httpx stream → boto3 multipart upload) over the same "
    "upstream URL into the same bucket with the same part size and parts in flight. Each repeat runs a fresh "
    "worker, so its peak RSS (`VmHWM`) is that size's alone; the peak RSS is *flat* when the medians of all sizes "
    "are within 5 % of the smallest.",
    "- **2 ingest**: signed deliveries from `wrk` at a rising number of connections (65 % new, 30 % repeats, 5 % "
    "badly signed); the figure is the best rate whose p99 stays under 50 ms. Two bare endpoints get the same "
    "pools the same way, under uvicorn with the gateway's server defaults: one that only verifies the Standard "
    "Webhooks signature (`bench/verify_app.py`, the ceiling of HTTP + HMAC in Python), and one that verifies it "
    "and does one `INSERT ... ON CONFLICT DO NOTHING` on raw asyncpg into a table of its own in the same database "
    "(`bench/verify_insert_app.py`): the least any durable receiver does. The gateway's rate is shown as a ratio "
    "to each. After every step the database is checked: every valid delivery acknowledged by the gateway (or the "
    "verify + insert endpoint) is recorded exactly once, no badly signed one at all.",
    "- **3 burst**: renders released over a 10 s window, timed from the release to the last asset archived, "
    "against the pipe moving the same assets with the same parallelism (a process per worker, as many uploads at "
    "once as a worker runs jobs). Run with 1, 2 and 4 workers (each on a fresh stack, the pipe with as many "
    "processes): throughput in videos/s and the scaling over one worker. The goals use 2 workers.",
    "- **4 facade**: retrieve and list, one request at a time from one keep-alive client, interleaved with the "
    "same calls on the simulator directly (what the gateway adds in front of upstream) and on a bare endpoint "
    "(`bench/auth_read_app.py`, raw asyncpg, no `app` import) that checks the same bearer key the way the gateway "
    "stores keys (SHA-256 of the key; the first 16 hex characters of the digest find the `api_keys` row, the "
    "digest is compared in constant time) and reads the caller's video row by id, or its newest 20 by `seq`: the "
    "least an authenticated retrieve does. Content: an archived asset through the gateway against the same object "
    "from S3 by a presigned URL.",
    "- **5 burst_gemini**: the burst through the Gemini simulator (real Veo renders, two images derived from "
    "each MP4), against the pipe moving the MP4s.",
    "- **History**: after their empty-database figures, the ingest and facade benchmarks fill their database with "
    "1,000,000 rows of history (`bench/history.py`, `INSERT ... SELECT generate_series`): completed videos, three "
    "archived assets each, a webhook event and a finished archive job per video, a delivered callback (two "
    "attempts) for every other one, and the verify + insert endpoint's own table; all within the last 28 days, "
    "so the pruner's 30-day retention deletes none of it. Then `VACUUM (ANALYZE)`, a `CHECKPOINT`, and the "
    "gateway and the baselines that read or write the database are measured again: shown beside the empty "
    "database's figures with the change in % (`--history-rows N` for another size, 0 to skip).",
    "",
    "A results file written before one of these baselines existed shows only the figures it has.",
    "",
]


# ----- context ----------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average_at_start": os.getloadavg(),
    }


def versions() -> dict[str, str]:
    found = {}
    for name in PACKAGES:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    for command, label in ((["wrk", "-v"], "wrk"), (["psql", "--version"], "psql")):
        try:
            out = subprocess.run(command, capture_output=True, text=True, timeout=10)
            found[label] = (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            continue
    try:
        from app.dev.seaweedfs import weed_binary

        out = subprocess.run([weed_binary(), "version"], capture_output=True, text=True, timeout=10)
        found["weed"] = out.stdout.strip().splitlines()[0]
    except (OSError, RuntimeError, subprocess.TimeoutExpired, IndexError):
        pass
    return found


def git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


# ----- goals --------------------------------------------------------------------------------------------


def _median(result: dict[str, Any], *path: str) -> float:
    node: Any = result
    for part in path:
        node = node[part]
    value: float = node["median"]
    return value


def goal(name: str, measured: float, target: float, *, higher_is_better: bool, unit: str = "") -> dict[str, Any]:
    met = measured >= target if higher_is_better else measured <= target
    if met or math.isnan(measured):
        shortfall = None
    elif target == 0:  # a count that must be zero: say how many, not a percentage
        shortfall = f"{measured:g} instead of 0"
    elif higher_is_better:
        shortfall = f"{100 * (target - measured) / target:.0f} % below"
    else:
        shortfall = f"{100 * (measured - target) / target:.0f} % above"
    return {
        "goal": name,
        "measured": measured,
        "target": target,
        "comparison": ">=" if higher_is_better else "<=",
        "unit": unit,
        "met": met,
        "shortfall": shortfall,
    }


def check_goals(benchmarks: dict[str, Any]) -> list[dict[str, Any]]:
    goals: list[dict[str, Any]] = []
    if "archive" in benchmarks:
        sizes = benchmarks["archive"]["sizes"]
        ordered = sorted(sizes.values(), key=lambda entry: entry["bytes"])
        for entry in ordered:
            ratio = entry["summary"]["ratio"]["median"]
            goals.append(goal(f"archive {entry['label']}: MB/s vs pipe", ratio, 0.9, higher_is_better=True, unit="x"))
        small, big = ordered[0], ordered[-1]
        rss = [entry["summary"]["worker_rss_mib"]["median"] for entry in ordered]
        goals.append(
            goal("archive: worker peak RSS, largest of the sizes", max(rss), 150.0, higher_is_better=False, unit="MiB")
        )
        goals.append(
            goal(
                f"archive: peak RSS growth, {small['label']} to {big['label']} (largest over smallest)",
                max(rss) / rss[0] - 1,
                0.05,
                higher_is_better=False,
                unit="growth",
            )
        )
    if "ingest" in benchmarks:
        ingest = benchmarks["ingest"]
        goals.append(
            goal(
                "ingest: deliveries/s at p99 < 50 ms",
                _median(ingest, "summary", "gateway_rps"),
                1500.0,
                higher_is_better=True,
                unit="/s",
            )
        )
        goals.append(
            goal("ingest: rate vs bare verifier", _median(ingest, "summary", "ratio"), 0.5, higher_is_better=True)
        )
        if "insert_ratio" in ingest["summary"]:
            goals.append(
                goal(
                    "ingest: rate vs verify + INSERT",
                    _median(ingest, "summary", "insert_ratio"),
                    0.8,
                    higher_is_better=True,
                )
            )
        if history := ingest.get("history"):
            goals.append(
                goal(
                    f"ingest, {history['rows']:,} rows of history: rate vs the empty database's",
                    1 + history["change_percent"]["gateway_rps"] / 100,
                    0.9,
                    higher_is_better=True,
                    unit="x",
                )
            )
        goals.append(
            goal(
                "ingest: valid deliveries lost",
                0.0 if ingest["no_valid_delivery_lost"] else 1.0,
                0.0,
                higher_is_better=False,
            )
        )
    if "burst" in benchmarks:
        burst = benchmarks["burst"]
        goals.append(
            goal("burst: time vs pipe", _median(burst, "summary", "ratio"), 1.25, higher_is_better=False, unit="x")
        )
        goals.append(
            goal(
                "burst: missed deadlines",
                burst["summary"]["missed_deadlines"]["max"],
                0.0,
                higher_is_better=False,
            )
        )
    if "burst_gemini" in benchmarks:
        gemini = benchmarks["burst_gemini"]
        goals.append(
            goal(
                "burst_gemini: time vs pipe",
                _median(gemini, "summary", "ratio"),
                1.25,
                higher_is_better=False,
                unit="x",
            )
        )
        goals.append(
            goal(
                "burst_gemini: missed deadlines",
                gemini["summary"]["missed_deadlines"]["max"],
                0.0,
                higher_is_better=False,
            )
        )
    if "facade" in benchmarks:
        facade = benchmarks["facade"]
        for what in ("retrieve", "list"):
            added = _median(facade, "summary", f"{what}_added_ms")
            goals.append(goal(f"facade: {what} added at p50", added, 2.0, higher_is_better=False, unit="ms"))
            if f"{what}_vs_bare" in facade["summary"]:
                goals.append(
                    goal(
                        f"facade: {what} p50 vs bare key check + read",
                        _median(facade, "summary", f"{what}_vs_bare"),
                        1.5,
                        higher_is_better=False,
                        unit="x",
                    )
                )
            if history := facade.get("history"):
                goals.append(
                    goal(
                        f"facade, {history['rows']:,} rows of history: {what} p50 vs the empty database's",
                        1 + history["change_percent"][f"gateway_{what}_p50_ms"] / 100,
                        1.1,
                        higher_is_better=False,
                        unit="x",
                    )
                )
        goals.append(
            goal(
                "facade: content vs S3 GET",
                _median(facade, "summary", "content_ratio"),
                0.9,
                higher_is_better=True,
                unit="x",
            )
        )
    return goals


# ----- the table ----------------------------------------------------------------------------------------


def _fmt(summary: dict[str, float], digits: int = 1) -> str:
    if not summary.get("n"):
        return "-"
    return f"{summary['min']:.{digits}f} / {summary['median']:.{digits}f} / {summary['max']:.{digits}f}"


def rows_of(benchmarks: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(benchmark, figure, gateway min/med/max, baseline min/med/max) for the table and the doc."""
    out: list[tuple[str, str, str, str]] = []
    if "archive" in benchmarks:
        for entry in sorted(benchmarks["archive"]["sizes"].values(), key=lambda e: e["bytes"]):
            s = entry["summary"]
            out.append(("1 archive", f"{entry['label']} MB/s", _fmt(s["gateway_mb_s"]), _fmt(s["pipe_mb_s"])))
            out.append(("1 archive", f"{entry['label']} ratio", _fmt(s["ratio"], 2), ""))
            out.append(("1 archive", f"{entry['label']} worker peak RSS MiB", _fmt(s["worker_rss_mib"]), ""))
        flat = benchmarks["archive"].get("rss_flat")
        if flat:
            out.append(
                (
                    "1 archive",
                    f"worker peak RSS flat across sizes (medians within {100 * flat['within']:g} %)",
                    f"{'yes' if flat['flat'] else 'NO'} (largest {100 * flat['growth']:+.1f} % over smallest)",
                    "",
                )
            )
    if "ingest" in benchmarks:
        out += _ingest_rows(benchmarks["ingest"])
    if "burst" in benchmarks:
        s = benchmarks["burst"]["summary"]
        videos = benchmarks["burst"]["videos"]
        out.append(
            (
                "3 burst",
                f"{videos} videos: seconds to all archived",
                _fmt(s["gateway_seconds"]),
                _fmt(s["pipe_seconds"]),
            )
        )
        out.append(("3 burst", "ratio (time)", _fmt(s["ratio"], 2), ""))
        if "after_last_webhook_s" in s:
            window = benchmarks["burst"]["window_seconds"]
            out.append(
                (
                    "3 burst",
                    f"of which after the last webhook ({window:g} s window)",
                    _fmt(s["after_last_webhook_s"]),
                    "",
                )
            )
        out.append(("3 burst", "completion→archived p50 s", _fmt(s["p50_latency_s"], 2), ""))
        out.append(("3 burst", "completion→archived p99 s", _fmt(s["p99_latency_s"], 2), ""))
        out.append(("3 burst", "missed deadlines", _fmt(s["missed_deadlines"], 0), ""))
        out += _workers_rows(benchmarks["burst"])
    if "facade" in benchmarks:
        s = benchmarks["facade"]["summary"]
        out.append(
            ("4 facade", "retrieve p50 ms", _fmt(s["gateway_retrieve_p50_ms"], 2), _fmt(s["direct_retrieve_p50_ms"], 2))
        )
        out.append(("4 facade", "retrieve added p50 ms", _fmt(s["retrieve_added_ms"], 2), ""))
        out.append(("4 facade", "list p50 ms", _fmt(s["gateway_list_p50_ms"], 2), _fmt(s["direct_list_p50_ms"], 2)))
        out.append(("4 facade", "list added p50 ms", _fmt(s["list_added_ms"], 2), ""))
        label = benchmarks["facade"]["content_label"]
        out.append(
            ("4 facade", f"content {label} MB/s", _fmt(s["gateway_content_mb_s"], 0), _fmt(s["s3_content_mb_s"], 0))
        )
        out.append(("4 facade", "content ratio", _fmt(s["content_ratio"], 2), ""))
        out += _facade_bare_rows(benchmarks["facade"])
    if "burst_gemini" in benchmarks:
        out += _gemini_rows(benchmarks["burst_gemini"])
    return out


def _change(change: dict[str, float], name: str) -> str:
    return f"{change[name]:+.1f} %" if name in change and math.isfinite(change[name]) else "-"


def _lost(flag: bool | None) -> str:
    return "" if flag is None else ("0" if flag else "SOME")


def _ingest_rows(ingest: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The gateway beside the verify-only endpoint, then (runs since issue 15) beside verify + INSERT, and the
    same figures again with history in the database."""
    name = "2 ingest"
    s = ingest["summary"]
    insert = "insert_rps" in s
    rate = "deliveries/s at p99 < 50 ms"
    rows = [
        (
            name,
            f"{rate} (baseline: verify only)" if insert else rate,
            _fmt(s["gateway_rps"], 0),
            _fmt(s["baseline_rps"], 0),
        ),
        (name, "ratio to verify only" if insert else "ratio", _fmt(s["ratio"], 2), ""),
    ]
    if insert:
        rows += [
            (
                name,
                f"{rate} (baseline: verify + INSERT, raw asyncpg)",
                _fmt(s["gateway_rps"], 0),
                _fmt(s["insert_rps"], 0),
            ),
            (name, "ratio to verify + INSERT", _fmt(s["insert_ratio"], 2), ""),
        ]
    rows += [
        (
            name,
            "p50 ack ms (baseline: verify only)" if insert else "p50 ack ms",
            _fmt(s["gateway_p50_ms"]),
            _fmt(s["baseline_p50_ms"]),
        ),
        (
            name,
            "p99 ack ms (baseline: verify only)" if insert else "p99 ack ms",
            _fmt(s["gateway_p99_ms"]),
            _fmt(s["baseline_p99_ms"]),
        ),
    ]
    if insert:
        rows.append(
            (name, "p99 ack ms (baseline: verify + INSERT)", _fmt(s["gateway_p99_ms"]), _fmt(s["insert_p99_ms"]))
        )
    rows.append(
        (
            name,
            "valid deliveries lost (baseline: verify + INSERT)" if insert else "valid deliveries lost",
            _lost(ingest["no_valid_delivery_lost"]),
            _lost(ingest.get("insert_lost_nothing")),
        )
    )
    history = ingest.get("history")
    if history:
        h, change = history["summary"], history["change_percent"]
        label = f"{history['rows']:,} rows of history"
        rows += [
            (
                name,
                f"{label}: deliveries/s (baseline: verify + INSERT)",
                _fmt(h["gateway_rps"], 0),
                _fmt(h["insert_rps"], 0),
            ),
            (
                name,
                f"{label}: change of deliveries/s vs empty database",
                _change(change, "gateway_rps"),
                _change(change, "insert_rps"),
            ),
            (name, f"{label}: ratio to verify + INSERT", _fmt(h["insert_ratio"], 2), ""),
            (name, f"{label}: p99 ack ms", _fmt(h["gateway_p99_ms"]), _fmt(h["insert_p99_ms"])),
            (
                name,
                f"{label}: valid deliveries lost",
                _lost(history["no_valid_delivery_lost"]),
                _lost(history.get("insert_lost_nothing")),
            ),
        ]
    return rows


def _workers_rows(burst: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The burst's throughput per number of workers, beside the pipe with as many processes, and the scaling."""
    by_workers = burst.get("by_workers") or {}
    if len(by_workers) < 2:
        return []
    rows = []
    for count, entry in sorted(by_workers.items(), key=lambda item: int(item[0])):
        s = entry["summary"]
        plural, processes = ("s", "processes") if int(count) > 1 else ("", "process")
        rows.append(
            (
                "3 burst",
                f"{count} worker{plural}: videos/s, release → all archived (pipe: {count} {processes})",
                _fmt(s["videos_per_s"], 1),
                _fmt(s["pipe_videos_per_s"], 1),
            )
        )
        rows.append(("3 burst", f"{count} worker{plural}: ratio (time)", _fmt(s["ratio"], 2), ""))
    scaling = ", ".join(
        f"{count}: {value:.2f}x" for count, value in sorted(burst["scaling"].items(), key=lambda i: int(i[0]))
    )
    rows.append(("3 burst", f"scaling: median videos/s over {min(by_workers, key=int)} worker's", scaling, ""))
    return rows


def _facade_bare_rows(facade: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """The gateway's retrieve and list beside the bare key check + row read, then the same with history."""
    s = facade["summary"]
    if "bare_retrieve_p50_ms" not in s:
        return []
    name = "4 facade"
    bare = "baseline: bare key check + row read, raw asyncpg"
    rows = [
        (name, f"retrieve p50 ms ({bare})", _fmt(s["gateway_retrieve_p50_ms"], 2), _fmt(s["bare_retrieve_p50_ms"], 2)),
        (name, "retrieve ratio to bare", _fmt(s["retrieve_vs_bare"], 2), ""),
        (
            name,
            "list p50 ms (baseline: bare key check + page read)",
            _fmt(s["gateway_list_p50_ms"], 2),
            _fmt(s["bare_list_p50_ms"], 2),
        ),
        (name, "list ratio to bare", _fmt(s["list_vs_bare"], 2), ""),
    ]
    history = facade.get("history")
    if history:
        h, change = history["summary"], history["change_percent"]
        label = f"{history['rows']:,} rows of history"
        for what in ("retrieve", "list"):
            gateway, baseline = f"gateway_{what}_p50_ms", f"bare_{what}_p50_ms"
            rows += [
                (name, f"{label}: {what} p50 ms (baseline: bare)", _fmt(h[gateway], 2), _fmt(h[baseline], 2)),
                (
                    name,
                    f"{label}: change of {what} p50 vs empty database",
                    _change(change, gateway),
                    _change(change, baseline),
                ),
                (name, f"{label}: {what} ratio to bare", _fmt(h[f"{what}_vs_bare"], 2), ""),
            ]
    return rows


def _gemini_rows(gemini: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    s = gemini["summary"]
    name = "5 burst_gemini"
    rows = [
        (
            name,
            f"{gemini['videos']} Veo videos: seconds to all archived (MP4 + 2 derived; pipe: the MP4s)",
            _fmt(s["gateway_seconds"]),
            _fmt(s["pipe_seconds"]),
        ),
        (name, "ratio (time)", _fmt(s["ratio"], 2), ""),
        (
            name,
            f"of which after the last webhook ({gemini['window_seconds']:g} s window)",
            _fmt(s["after_last_webhook_s"]),
            "",
        ),
        (name, "of which after the last MP4 archived (derivations only)", _fmt(s["after_last_mp4_s"]), ""),
        (name, "derivation's share of the workers' job time after the release", _fmt_percent(s["derive_share"]), ""),
    ]
    if "sync_share" in s:
        rows.append((name, "syncs' (operation re-reads) share of it", _fmt_percent(s["sync_share"]), ""))
        rows.append((name, "job slots busy after the release (of 2 x 4)", _fmt_percent(s["slots_busy"]), ""))
    rows += [
        (name, "job run p50 s: MP4 download (upstream → S3)", _fmt(s["mp4_job_p50_s"], 2), ""),
        (name, "job run p50 s: derivation (S3 → decode → S3)", _fmt(s["derive_job_p50_s"], 2), ""),
        (name, "completion→archived p50 s", _fmt(s["p50_latency_s"], 2), ""),
        (name, "completion→archived p99 s", _fmt(s["p99_latency_s"], 2), ""),
        (name, "missed deadlines", _fmt(s["missed_deadlines"], 0), ""),
    ]
    return rows


def _fmt_percent(summary: dict[str, float]) -> str:
    if not summary.get("n"):
        return "-"
    return " / ".join(f"{100 * summary[key]:.0f} %" for key in ("min", "median", "max"))


def print_table(result: dict[str, Any]) -> None:
    console = Console(width=150)
    table = Table(title="Video Gateway benchmarks (min / median / max)")
    for column in ("benchmark", "figure", "gateway", "baseline (same run)"):
        table.add_column(column)
    for row in rows_of(result["benchmarks"]):
        table.add_row(*row)
    console.print(table)
    goals = Table(title="Goals (medians)")
    for column in ("goal", "measured", "target", "met"):
        goals.add_column(column)
    for entry in check_goals(result["benchmarks"]):  # the goals as defined now, from the run's figures
        goals.add_row(
            entry["goal"],
            f"{entry['measured']:.3g} {entry['unit']}",
            f"{entry['comparison']} {entry['target']:g} {entry['unit']}",
            "yes" if entry["met"] else f"NO ({entry['shortfall']})",
        )
    console.print(goals)


# ----- files --------------------------------------------------------------------------------------------


def write_json(result: dict[str, Any], directory: Path, name: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(json.dumps(result, indent=1, default=str) + "\n")
    return path


def today() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%d")


def plot(result: dict[str, Any], directory: Path) -> list[Path]:
    """One PNG per benchmark (matplotlib, Agg backend: no display)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    benchmarks = result["benchmarks"]

    def bars(ax: Any, labels: list[str], series: dict[str, list[dict[str, float]]], ylabel: str) -> None:
        width = 0.8 / max(1, len(series))
        for offset, (name, summaries) in enumerate(series.items()):
            xs = [i + offset * width for i in range(len(labels))]
            medians = [s["median"] for s in summaries]
            errors = [[s["median"] - s["min"] for s in summaries], [s["max"] - s["median"] for s in summaries]]
            ax.bar(xs, medians, width, yerr=errors, capsize=4, label=name)
        ax.set_xticks([i + width * (len(series) - 1) / 2 for i in range(len(labels))], labels)
        ax.set_ylabel(ylabel)
        ax.legend()

    if "archive" in benchmarks:
        entries = sorted(benchmarks["archive"]["sizes"].values(), key=lambda e: e["bytes"])
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        labels = [e["label"] for e in entries]
        bars(
            left,
            labels,
            {
                "gateway (webhook → archived)": [e["summary"]["gateway_mb_s"] for e in entries],
                "pipe (httpx → upload_fileobj)": [e["summary"]["pipe_mb_s"] for e in entries],
            },
            "MB/s",
        )
        bars(right, labels, {"worker peak RSS": [e["summary"]["worker_rss_mib"] for e in entries]}, "MiB")
        right.axhline(150, color="red", linestyle="--", linewidth=1)
        fig.suptitle("1. Archive throughput and memory (bars: median, whiskers: min/max)")
        written.append(_save(fig, directory / "archive.png"))
    if "ingest" in benchmarks:
        fig, ax = plt.subplots(figsize=(7, 4))
        names = {"gateway": "gateway", "baseline": "verify only", "insert": "verify + INSERT"}
        for repeat in benchmarks["ingest"]["raw"]:
            for target, marker in (("gateway", "o"), ("baseline", "s"), ("insert", "^")):
                if target not in repeat:
                    continue
                steps = repeat[target]
                ax.plot(
                    [s["rps"] for s in steps],
                    [s["p99_ms"] for s in steps],
                    marker=marker,
                    label=f"{names[target]} (repeat {repeat['repeat'] + 1})",
                    alpha=0.7,
                )
        ax.axhline(50, color="red", linestyle="--", linewidth=1)
        ax.set_xlabel("deliveries/s (wrk, rising connections)")
        ax.set_ylabel("p99 ack latency, ms")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
        ax.set_title("2. Webhook ingest: p99 against load")
        written.append(_save(fig, directory / "ingest.png"))
    if "burst" in benchmarks:
        s = benchmarks["burst"]["summary"]
        by_workers = sorted((benchmarks["burst"].get("by_workers") or {}).items(), key=lambda item: int(item[0]))
        fig, axes = plt.subplots(1, 2 if len(by_workers) > 1 else 1, figsize=(10 if len(by_workers) > 1 else 6, 4))
        ax = axes[0] if len(by_workers) > 1 else axes
        bars(
            ax, ["seconds to archive the burst"], {"gateway": [s["gateway_seconds"]], "pipe": [s["pipe_seconds"]]}, "s"
        )
        ax.set_title(f"{benchmarks['burst']['workers']} workers")
        if len(by_workers) > 1:
            bars(
                axes[1],
                [f"{count} worker{'s' if int(count) > 1 else ''}" for count, _ in by_workers],
                {
                    "gateway": [entry["summary"]["videos_per_s"] for _, entry in by_workers],
                    "pipe (as many processes)": [entry["summary"]["pipe_videos_per_s"] for _, entry in by_workers],
                },
                "videos/s",
            )
            axes[1].set_title("throughput by workers")
        fig.suptitle(f"3. Burst of {benchmarks['burst']['videos']} videos")
        written.append(_save(fig, directory / "burst.png"))
    if "facade" in benchmarks:
        s = benchmarks["facade"]["summary"]
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
        series = {
            "gateway": [s["gateway_retrieve_p50_ms"], s["gateway_list_p50_ms"]],
            "simulator directly": [s["direct_retrieve_p50_ms"], s["direct_list_p50_ms"]],
        }
        if "bare_retrieve_p50_ms" in s:
            series["bare key check + read"] = [s["bare_retrieve_p50_ms"], s["bare_list_p50_ms"]]
        bars(left, ["retrieve", "list"], series, "p50 ms")
        bars(right, ["content"], {"gateway": [s["gateway_content_mb_s"]], "S3 GET": [s["s3_content_mb_s"]]}, "MB/s")
        fig.suptitle("4. Facade overhead")
        written.append(_save(fig, directory / "facade.png"))
    if "burst_gemini" in benchmarks:
        gemini = benchmarks["burst_gemini"]
        s = gemini["summary"]
        fig, ax = plt.subplots(figsize=(7, 4))
        bars(
            ax,
            ["seconds to archive the burst", "of which after the last MP4"],
            {
                "gateway (MP4 + derived images)": [s["gateway_seconds"], s["after_last_mp4_s"]],
                "pipe (the MP4s)": [s["pipe_seconds"], {"min": 0.0, "median": 0.0, "max": 0.0}],
            },
            "s",
        )
        ax.set_title(f"5. Burst of {gemini['videos']} Veo videos through the Gemini simulator")
        written.append(_save(fig, directory / "burst_gemini.png"))
    return written


def _save(fig: Any, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def newest(directory: Path, pattern: str) -> dict[str, Any] | None:
    candidates = sorted(directory.glob(pattern))
    if not candidates:
        return None
    loaded: dict[str, Any] = json.loads(candidates[-1].read_text())
    loaded["_file"] = str(candidates[-1].relative_to(ROOT))
    return loaded


def write_doc(results_dir: Path = RESULTS_DIR, docs_dir: Path = DOCS_DIR) -> Path:
    """Regenerate docs/benchmarks.md from the newest results (bench and soak) and bench/analysis.md."""
    bench = newest(results_dir, "20??-??-??.json")  # a full run; `--only` runs write <date>-<name>.json
    soak = newest(results_dir, "soak-*.json")
    lines = [
        "# Benchmarks",
        "",
        "<!-- Generated by `python -m bench` (bench/report.py) from bench/results/; edit bench/analysis.md. -->",
        "",
        "Every figure is measured on one machine (API, worker, simulator, SeaweedFS and Postgres all local) "
        "against a baseline measured in the same run, repeated, and shown as **min / median / max**. "
        "Goals are judged on the medians. MB/s is 10^6 bytes/s, MiB is 2^20 bytes.",
        "",
        "What these per-process figures mean for a large deployment (API pods, worker pods, Postgres writes/s, S3 "
        "requests/s by renders/day): [scaling.md](scaling.md), generated from the same results.",
        "",
        "```sh",
        "make bench                  # every benchmark, 3 repeats: bench/results/<date>.json, docs/benchmarks/*.png",
        "make bench-smoke            # tiny sizes, 1 repeat, results in a temp dir (the suite runs this)",
        "make soak                   # 20 minutes with faults; make soak SOAK_MINUTES=5 for a shorter one",
        "python -m bench run --only ingest --repeat 5   # one benchmark",
        "python -m bench run --only facade --history-rows 100000   # less history than the full run's 1,000,000",
        "```",
        "",
        *METHOD,
    ]
    if bench is not None:
        info = bench["machine"]
        lines += [
            f"## Latest run: {bench['finished_at']} (`{bench['command']}`)",
            "",
            f"Results: `{bench['_file']}`. Commit `{bench['git']['commit'][:12]}`"
            + (" (with uncommitted changes)" if bench["git"]["dirty"] else "")
            + f". Machine: {info['cpus']} x {info['cpu']}, {info['memory_gib']} GiB, Linux {info['kernel']}, "
            f"Python {info['python']}; load average at start "
            + ", ".join(f"{x:.2f}" for x in info["load_average_at_start"])
            + ".",
            "",
            "| Benchmark | Figure | Gateway | Baseline (same run) |",
            "|---|---|---|---|",
        ]
        lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows_of(bench["benchmarks"])]
        lines += ["", "### Goals", "", "| Goal | Measured (median) | Target | Met |", "|---|---|---|---|"]
        for entry in check_goals(bench["benchmarks"]):  # the goals as defined now, from the run's figures
            met = "yes" if entry["met"] else f"**no**, {entry['shortfall']}"
            lines.append(
                f"| {entry['goal']} | {entry['measured']:.3g} {entry['unit']} | "
                f"{entry['comparison']} {entry['target']:g} {entry['unit']} | {met} |"
            )
        lines += [""]
        for name in ("archive", "ingest", "burst", "facade", "burst_gemini"):
            if (docs_dir / "benchmarks" / f"{name}.png").exists() and name in bench["benchmarks"]:
                lines += [f"![{name}](benchmarks/{name}.png)", ""]
        profiles = bench.get("profiles") or {}
        if profiles:
            lines += [
                "### Profiles (py-spy, share of the process's busy samples)",
                "",
                "Taken in the same run, outside the measured repeats (`bench/profile.py`); raw collapsed stacks "
                "beside the results JSON.",
                "",
                "| Profile | Busy samples | CPU by package (or innermost frame) | Our code, inclusive |",
                "|---|---|---|---|",
            ]
            for name, summary in profiles.items():
                busy = dict(summary.get("busy_samples", []))
                # Results written before `summarize` grouped by package carry only "self" and "inclusive".
                packages = ", ".join(
                    f"{p} {v} %" for p, v in (summary.get("by_package") or summary.get("self", []))[:6]
                )
                ours = ", ".join(
                    f"`{f.split(' (')[0]}` {v} %"
                    for f, v in (summary.get("gateway") or _ours(summary.get("inclusive", [])))[:6]
                )
                lines.append(f"| {name} | {busy.get('busy', 0)} | {packages} | {ours} |")
            lines += [""]
    for name in OWN_SECTIONS:
        alone = newest(results_dir, f"20??-??-??-{name}.json")
        if alone is None or name not in alone["benchmarks"]:
            continue
        if bench is None or name not in bench["benchmarks"] or alone["finished_at"] > bench["finished_at"]:
            lines += _own_section(name, alone, docs_dir)
    if soak is not None:
        lines += _soak_section(soak)
    if ANALYSIS.exists():
        lines += [ANALYSIS.read_text().rstrip(), ""]
    docs_dir.mkdir(parents=True, exist_ok=True)
    path = docs_dir / "benchmarks.md"
    path.write_text("\n".join(lines) + "\n")
    write_scaling_doc(results_dir, docs_dir)  # the deployment model (docs/scaling.md) reads the same results
    return path


def _own_section(name: str, result: dict[str, Any], docs_dir: Path) -> list[str]:
    """A benchmark run alone (`--only NAME`): its table beside its baseline, its goals and its plot."""
    info = result["machine"]
    entry = result["benchmarks"][name]
    lines = [
        f"## Latest {name} run: {result['finished_at']} (`{result['command']}`)",
        "",
        f"Results: `{result['_file']}`. Commit `{result['git']['commit'][:12]}`"
        + (" (with uncommitted changes)" if result["git"]["dirty"] else "")
        + f". Machine: {info['cpus']} x {info['cpu']}, {info['memory_gib']} GiB; load average at start "
        + ", ".join(f"{x:.2f}" for x in info["load_average_at_start"])
        + f". {result['repeats']} repeat{'s' if result['repeats'] > 1 else ''}.",
        "",
    ]
    if name == "burst_gemini":
        lines += [
            f"Veo renders (`veo-3.1-fast-generate-preview`, 4 s at {entry['size']}, drawn by the Gemini simulator "
            f"at {entry['fps']} fps) released over {entry['window_seconds']:g} s; {entry['workers']} workers x "
            f"{entry['worker_concurrency']} jobs archive each MP4 and derive its thumbnail and spritesheet from the "
            "archived copy. The pipe moves the same MP4s with the same parallelism and derives nothing, so the "
            "ratio includes derivation; its share is shown apart (job time from the workers' logs, and the "
            "time left after the last MP4 landed).",
            "",
        ]
        if entry["videos"] < 1000:
            lines += [
                f"{entry['videos']} videos per repeat, not the 1,000 of the OpenAI burst: every video here is a real "
                "render, drawn before the burst, then archived with two images decoded from it, about a second of "
                "this 2-core machine per video in all; 1,000 would take about 15 minutes per repeat, so the plan "
                "was cut to what fits the whole benchmark in about 10 minutes.",
                "",
            ]
    lines += ["| Benchmark | Figure | Gateway | Baseline (same run) |", "|---|---|---|---|"]
    lines += [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows_of({name: entry})]
    lines += ["", "| Goal | Measured (median) | Target | Met |", "|---|---|---|---|"]
    for goal_entry in check_goals({name: entry}):
        met = "yes" if goal_entry["met"] else f"**no**, {goal_entry['shortfall']}"
        lines.append(
            f"| {goal_entry['goal']} | {goal_entry['measured']:.3g} {goal_entry['unit']} | "
            f"{goal_entry['comparison']} {goal_entry['target']:g} {goal_entry['unit']} | {met} |"
        )
    lines += [""]
    if (docs_dir / "benchmarks" / f"{name}.png").exists():
        lines += [f"![{name}](benchmarks/{name}.png)", ""]
    return lines


def _ours(inclusive: list[tuple[str, float]]) -> list[tuple[str, float]]:
    """Our own functions out of an old-style inclusive list (short names lost the `app/` path)."""
    ours = ("Worker.", "ArchiveStorage.", "run_", "receive", "Webhook", "AccessLog.", "Idempotency", "BodySize")
    return [(frame, share) for frame, share in inclusive if frame.startswith(ours)]


def _soak_section(soak: dict[str, Any]) -> list[str]:
    lines = [
        f"## Latest soak: {soak['finished_at']} (`{soak['command']}`)",
        "",
        f"Results: `{soak['_file']}`. {soak['minutes']} minutes asked; renders created "
        f"{soak.get('videos_in_db', soak['renders_created'])} (at most {soak['renders_asked']} asked; creation "
        f"paced by a bounded backlog); "
        + (
            f"{soak['create_retries']} create retries with the same Idempotency-Key, "
            f"{soak['renders_outcome_unknown']} outcome unknown; Postgres: {soak.get('postgres', '?')}"
            if "create_retries" in soak
            else f"{soak['create_batch_errors']} create batches refused while faults were injected"
        )
        + f"; drained in {soak['drain_seconds']:.0f} s. Outcome: "
        + ("**every invariant held**." if soak["ok"] else "**an invariant failed** (see below)."),
        "",
        "| Fault | Count |",
        "|---|---|",
    ]
    lines += [f"| {name} | {count} |" for name, count in soak["faults"].items()]
    pruned = soak.get("pruned_rows")
    if pruned:
        lines += [
            "",
            "Rows the pruner deleted during the soak (retention, `VG_RETENTION__*`): "
            + ", ".join(f"{table} {count:,}" for table, count in pruned.items())
            + ".",
        ]
    lines += ["", "| Invariant | Held | Detail |", "|---|---|---|"]
    for name, check in soak["invariants"].items():
        lines.append(f"| {name} | {'yes' if check['ok'] else '**NO**'} | {check['detail']} |")
    lines += [""]
    return lines
