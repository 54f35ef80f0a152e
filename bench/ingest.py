"""Benchmark 2, webhook ingest: signed deliveries at a rising load from `wrk`, against the gateway's receiver
and, in the same run, two bare FastAPI endpoints: one that only verifies the signature (`bench.verify_app`), and
one that verifies it and does one INSERT on raw asyncpg (`bench.verify_insert_app`, its own table in the same
database): the least any durable receiver does. The gateway's rate is reported as a ratio to each.

wrk (Debian's, installed by `make bench`) runs in its own process and is far cheaper than a Python client:
a Lua script replays a pool of deliveries signed beforehand here (wrk's LuaJIT has no HMAC), one file per
wrk thread. Each pool is 65 % new valid deliveries, 30 % exact repeats of one sent earlier by the same
thread (a retrying sender) and 5 % deliveries signed with a wrong secret. Bodies are real `video.completed`
events for videos created beforehand, so a good delivery takes the full path: verify, store, queue a sync.
All three endpoints get the same pools, the same way.

The load rises by doubling wrk's connections; each step reports requests/s and p50/p99 ack latency. The
"sustained" rate is the best step whose p99 stays under 50 ms. After every step against the gateway (and the
verify + insert endpoint) the database is checked: every distinct valid delivery wrk had an answer for is
recorded exactly once, and no badly signed one is.

With `history_rows`, the gateway's database is then filled with that much history (`bench.history`; the bare
endpoint's table too) and the gateway and the verify + insert endpoint are measured again, the same way: the
figures with history are reported beside the empty database's, with the change in %.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
from standardwebhooks import Webhook

from app.dev.processes import ManagedProcess
from bench.drive import create_videos, start_app
from bench.history import change_percent, fill
from bench.profile import start_py_spy
from bench.stack import BenchStack, full_stack, new_webhook_secret, rows
from bench.stats import spread

WRK_THREADS = 2
P99_BUDGET_MS = 50.0
DUPLICATE_SHARE = 0.30
BAD_SIGNATURE_SHARE = 0.05
# A duplicate repeats a delivery at least this many entries back, so the original has been answered.
DUPLICATE_MIN_DISTANCE = 200
KNOWN_VIDEOS = 50
# The verify + insert baseline's own table, in the benchmark's database (never one of the gateway's).
INSERT_TABLE = "bench_ingest_baseline"

LUA = r"""
local pool = "%(pool)s"
threads = {}
local counter = 0
function setup(thread)
  thread:set("tid", counter); counter = counter + 1
  table.insert(threads, thread)
end
function init(args)
  ids, sigs, bodies = {}, {}, {}
  local n = 0
  for line in io.lines(pool .. "-" .. tid .. ".txt") do
    local a, b, c = line:match("^(%%S+) (%%S+) (%%S+)$")
    n = n + 1; ids[n] = a; sigs[n] = b; bodies[n] = c
  end
  count, idx, wrapped = n, 0, false
  ok, unauthorized, server_errors, other = 0, 0, 0, 0
  -- Which requests got a 2xx, by pool index: the gateway echoes X-Request-ID, and wrk's response() does
  -- not say which request it answers (requests on several connections finish out of order).
  answered = io.open(pool .. "-answered-" .. tid .. ".txt", "w")
  answered:setvbuf("line")
end
local headers = {["content-type"] = "application/json", ["webhook-timestamp"] = "%(ts)s"}
function request()
  idx = idx + 1
  if idx > count then idx = 1; wrapped = true end
  headers["webhook-id"] = ids[idx]; headers["webhook-signature"] = sigs[idx]
  headers["x-request-id"] = "bench-" .. idx
  return wrk.format("POST", nil, headers, bodies[idx])
end
function response(status, hdrs, body)
  if status >= 200 and status < 300 then
    ok = ok + 1
    local tag = hdrs["x-request-id"] or hdrs["X-Request-ID"]
    if tag then answered:write(tag:sub(7), "\n") end
  elseif status == 401 then unauthorized = unauthorized + 1
  elseif status >= 500 then server_errors = server_errors + 1
  else other = other + 1 end
end
function done(summary, latency, requests)
  io.write(string.format("RESULT requests=%%d seconds=%%.3f p50_ms=%%.3f p99_ms=%%.3f max_ms=%%.3f " ..
    "connect=%%d read=%%d write=%%d status=%%d timeout=%%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, summary.errors.connect, summary.errors.read, summary.errors.write,
    summary.errors.status, summary.errors.timeout))
  for _, t in ipairs(threads) do
    io.write(string.format("THREAD tid=%%s used=%%s wrapped=%%s ok=%%s unauthorized=%%s server_errors=%%s other=%%s\n",
      t:get("tid"), t:get("idx"), tostring(t:get("wrapped")), t:get("ok"), t:get("unauthorized"),
      t:get("server_errors"), t:get("other")))
  end
end
"""


@dataclass
class Entry:
    webhook_id: str
    signature: str
    body: str
    valid: bool


def build_pools(
    secret: str, upstream_ids: list[str], per_thread: int, directory: Path
) -> tuple[str, list[list[Entry]]]:
    """Pre-signed deliveries, one file per wrk thread; returns the timestamp used and the entries."""
    good, bad = Webhook(secret), Webhook(new_webhook_secret())
    timestamp = int(time.time())
    signed_at = datetime.fromtimestamp(timestamp, tz=UTC)
    rng = secrets.SystemRandom()
    pools: list[list[Entry]] = []
    directory.mkdir(parents=True, exist_ok=True)
    for thread in range(WRK_THREADS):
        entries: list[Entry] = []
        valid_so_far: list[Entry] = []
        for index in range(per_thread):
            draw = rng.random()
            # Valid entries are at least 65 % of all, so this window is at least the minimum distance back.
            window = valid_so_far[-5000:-DUPLICATE_MIN_DISTANCE]
            if draw < DUPLICATE_SHARE and window:
                entries.append(rng.choice(window))
                continue
            webhook_id = f"wh_{secrets.token_hex(16)}"
            event = {
                "id": f"evt_{secrets.token_hex(16)}",
                "object": "event",
                "created_at": timestamp,
                "type": "video.completed",
                "data": {"id": upstream_ids[index % len(upstream_ids)]},
            }
            body = json.dumps(event, separators=(",", ":"))
            valid = draw < 1 - BAD_SIGNATURE_SHARE
            signer = good if valid else bad
            entry = Entry(webhook_id, signer.sign(webhook_id, signed_at, body), body, valid)
            entries.append(entry)
            if valid:
                valid_so_far.append(entry)
        with (directory / f"pool-{thread}.txt").open("w") as handle:
            handle.writelines(f"{e.webhook_id} {e.signature} {e.body}\n" for e in entries)
        pools.append(entries)
    return str(timestamp), pools


def wrk_binary() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise RuntimeError("wrk not found: `apt-get install -y wrk` (make bench does it)")
    return found


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path, *, connections: int, seconds: float, server_pid: int) -> dict[str, Any]:
    cpu_before = cpu_seconds(server_pid)
    started = time.monotonic()
    out = subprocess.run(
        [
            wrk_binary(),
            f"-t{WRK_THREADS}",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "5s",
            "-s",
            str(script),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    wall = time.monotonic() - started
    result: dict[str, Any] = {"connections": connections}
    summary = re.search(r"^RESULT (.*)$", out, re.MULTILINE)
    if summary is None:
        raise RuntimeError(f"wrk gave no result:\n{out}")
    for pair in summary.group(1).split():
        name, value = pair.split("=")
        result[name] = float(value)
    result["rps"] = result["requests"] / result["seconds"]
    result["threads"] = []
    for line in re.findall(r"^THREAD (.*)$", out, re.MULTILINE):
        fields = dict(pair.split("=") for pair in line.split())
        result["threads"].append({k: (v if k == "wrapped" else int(v)) for k, v in fields.items()})
    result["server_cpu_percent"] = 100 * (cpu_seconds(server_pid) - cpu_before) / wall
    result["socket_errors"] = sum(result[k] for k in ("connect", "read", "write", "timeout"))
    result["server_errors"] = sum(t["server_errors"] for t in result["threads"])
    result["unauthorized"] = sum(t["unauthorized"] for t in result["threads"])
    return result


async def _check_recorded(
    dsn: str, pools: list[list[Entry]], step: dict[str, Any], answered_dir: Path, table: str = "webhook_events"
) -> dict[str, Any]:
    """Every distinct valid delivery answered 2xx is in `table` (its `webhook_id` column) once; no badly signed
    one is."""
    answered_valid: set[str] = set()
    sent_valid: set[str] = set()
    sent_bad: set[str] = set()
    complete_log = True
    for thread in step["threads"]:
        entries = pools[thread["tid"]]
        used = len(entries) if thread["wrapped"] == "true" else thread["used"]
        for entry in entries[:used]:
            (sent_valid if entry.valid else sent_bad).add(entry.webhook_id)
        # Exactly the requests the gateway answered 2xx, by the pool index each carried in X-Request-ID.
        logged = (answered_dir / f"pool-answered-{thread['tid']}.txt").read_text().split()
        # Every 2xx carried its tag back; a shorter log would hide answers from this check.
        complete_log = complete_log and len(logged) == thread["ok"]
        for line in logged:
            entry = entries[int(line) - 1]
            if entry.valid:
                answered_valid.add(entry.webhook_id)
    step["answered_2xx_logged"] = len(answered_valid)
    connection = await asyncpg.connect(dsn)
    try:
        recorded = {
            record[0]
            for record in await connection.fetch(
                f"SELECT webhook_id FROM {table} WHERE webhook_id = ANY($1::text[])",  # noqa: S608  (our table)
                list(sent_valid | sent_bad),
            )
        }
        duplicated = await connection.fetchval(
            f"SELECT count(*) FROM (SELECT webhook_id FROM {table} WHERE webhook_id = ANY($1::text[]) "  # noqa: S608
            "GROUP BY webhook_id HAVING count(*) > 1) d",
            list(sent_valid),
        )
    finally:
        await connection.close()
    return {
        "valid_answered": len(answered_valid),
        "valid_lost": len(answered_valid - recorded),
        "bad_recorded": len(sent_bad & recorded),
        "recorded_more_than_once": int(duplicated),
        "answer_log_complete": complete_log,
        "ok": complete_log and not (answered_valid - recorded) and not (sent_bad & recorded) and duplicated == 0,
    }


def sweep(
    target: str,
    url: str,
    server_pid: int,
    *,
    secret: str,
    upstream_ids: list[str],
    steps: list[int],
    seconds: float,
    workdir: Path,
    dsn: str | None,
    table: str = "webhook_events",
    profile: Path | None = None,
) -> list[dict[str, Any]]:
    results = []
    expected_rate = 3000.0
    for connections in steps:
        per_thread = int(expected_rate * 2.5 * seconds / WRK_THREADS) + 2000
        timestamp, pools = build_pools(secret, upstream_ids, per_thread, workdir / "pools")
        script = workdir / f"{target}.lua"
        script.write_text(LUA % {"pool": str(workdir / "pools" / "pool"), "ts": timestamp})
        step = run_wrk(url, script, connections=connections, seconds=seconds, server_pid=server_pid)
        expected_rate = max(expected_rate, step["rps"])
        if dsn is not None:
            time.sleep(1.0)  # let the server finish what wrk cut off
            step["recorded"] = asyncio.run(_check_recorded(dsn, pools, step, workdir / "pools", table))
        results.append(step)
        sys.stderr.write(
            f"  ingest {target} c={connections}: {step['rps']:.0f} req/s p50 {step['p50_ms']:.1f} ms "
            f"p99 {step['p99_ms']:.1f} ms 5xx {step['server_errors']:.0f}\n"
        )
    if profile is not None:
        # One more, unmeasured run at the busiest step, under py-spy (its sampling costs the server a little).
        timestamp, pools = build_pools(
            secret, upstream_ids, int(expected_rate * 2.5 * seconds / WRK_THREADS) + 2000, workdir / "pools"
        )
        script = workdir / f"{target}.lua"
        script.write_text(LUA % {"pool": str(workdir / "pools" / "pool"), "ts": timestamp})
        profiler = start_py_spy(server_pid, profile)
        run_wrk(url, script, connections=steps[-1], seconds=seconds, server_pid=server_pid)
        profiler.stop()
    return results


def sustained(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """The best step whose p99 is within budget (or the lowest step, flagged, when none is)."""
    within = [step for step in steps if step["p99_ms"] < P99_BUDGET_MS]
    best = max(within, key=lambda step: step["rps"]) if within else min(steps, key=lambda step: step["p99_ms"])
    return {**best, "within_budget": bool(within)}


# name in the results → (bare app module, the step's recorded check against its table, or None: no database).
BARE = {"baseline": ("bench.verify_app", None), "insert": ("bench.verify_insert_app", INSERT_TABLE)}


@dataclass
class Target:
    name: str
    url: str
    pid: int
    table: str | None


def run(
    workdir: Path,
    *,
    repeats: int,
    steps: list[int],
    seconds: float,
    profile_dir: Path | None = None,
    history_rows: int = 0,
) -> dict[str, Any]:
    with full_stack(workdir) as stack:
        upstream_ids = _known_videos(stack)
        bare: list[tuple[ManagedProcess, int]] = []
        try:
            for name, (module, table) in BARE.items():
                env = {"BENCH_DSN": stack.dsn, "BENCH_TABLE": table} if table else {}
                env["BENCH_WEBHOOK_SECRET"] = stack.webhook_secret
                bare.append(start_app(module, name=name, env=env, logs=workdir / "logs"))
            gateway = Target("gateway", f"{stack.api_url}/webhooks/openai", stack.api.pid, "webhook_events")
            targets = [gateway] + [
                Target(name, f"http://127.0.0.1:{port}/webhooks/openai", process.pid, table)
                for (name, (_, table)), (process, port) in zip(BARE.items(), bare, strict=True)
            ]

            def measure(chosen: list[Target], profile: Path | None) -> dict[str, Any]:
                return _measure(
                    stack,
                    chosen,
                    upstream_ids=upstream_ids,
                    repeats=repeats,
                    steps=steps,
                    seconds=seconds,
                    workdir=workdir,
                    profile=profile,
                )

            result = measure(targets, profile_dir / "ingest-api.txt" if profile_dir is not None else None)
            if history_rows:
                filled = fill(stack.dsn, history_rows, baseline_table=INSERT_TABLE)
                # The verify-only endpoint touches no database: history cannot change its figure.
                with_history = measure([t for t in targets if t.table is not None], None)
                result["history"] = {
                    **with_history,
                    "rows": history_rows,
                    "fill": filled,
                    "change_percent": {
                        name: change_percent(result["summary"][name]["median"], summary["median"])
                        for name, summary in with_history["summary"].items()
                    },
                }
        finally:
            for process, _ in bare:
                process.stop()
        result["webhook_rows"] = rows(stack.dsn, "SELECT count(*) FROM webhook_events")[0][0]
    result["p99_budget_ms"] = P99_BUDGET_MS
    return result


def _measure(
    stack: BenchStack,
    targets: list[Target],
    *,
    upstream_ids: list[str],
    repeats: int,
    steps: list[int],
    seconds: float,
    workdir: Path,
    profile: Path | None,
) -> dict[str, Any]:
    """`repeats` sweeps of every target, in turn; the sustained rate and its latencies, and the ratios of the
    gateway's rate to each bare endpoint's (`ratio`: to verify-only, `insert_ratio`: to verify + insert)."""
    names = [target.name for target in targets]
    samples: dict[str, list[float]] = {}
    for name in names:
        for figure in ("rps", "p50_ms", "p99_ms"):
            samples[f"{name}_{figure}"] = []
    for name in names[1:]:
        samples["ratio" if name == "baseline" else f"{name}_ratio"] = []
    raw: list[dict[str, Any]] = []
    lost_nothing = {target.name: True for target in targets if target.table}
    for repeat in range(repeats):
        entry: dict[str, Any] = {"repeat": repeat}
        sustained_by: dict[str, dict[str, Any]] = {}
        for target in targets:
            target_steps = sweep(
                target.name,
                target.url,
                target.pid,
                secret=stack.webhook_secret,
                upstream_ids=upstream_ids,
                steps=steps,
                seconds=seconds,
                workdir=workdir,
                dsn=stack.dsn if target.table else None,
                table=target.table or "webhook_events",
                profile=profile if target.name == "gateway" and repeat == 0 else None,
            )
            entry[target.name] = target_steps
            sustained_by[target.name] = best = sustained(target_steps)
            for figure in ("rps", "p50_ms", "p99_ms"):
                samples[f"{target.name}_{figure}"].append(best[figure])
            if target.table:
                ok = all(step["recorded"]["ok"] and step["server_errors"] == 0 for step in target_steps)
                lost_nothing[target.name] = lost_nothing[target.name] and ok
        for name in names[1:]:
            ratio = sustained_by["gateway"]["rps"] / sustained_by[name]["rps"]
            samples["ratio" if name == "baseline" else f"{name}_ratio"].append(ratio)
        raw.append(entry)
    return {
        "summary": {name: spread(values) for name, values in samples.items()},
        "samples": samples,
        "raw": raw,
        # The gateway's (a goal), and the verify + insert endpoint's: the bare receiver loses nothing either.
        "no_valid_delivery_lost": bool(lost_nothing.get("gateway")),
        "insert_lost_nothing": bool(lost_nothing.get("insert")),
    }


def _known_videos(stack: BenchStack) -> list[str]:
    """Videos the deliveries are about: created through the gateway, never completed (no real webhooks)."""
    stack.sim_config(webhook_url=None, queue_seconds=3600)
    key = stack.new_caller_key()
    created = create_videos(stack, [key], KNOWN_VIDEOS, prompt="ingest")
    ids = [record[0] for record in rows(stack.dsn, "SELECT upstream_id FROM videos WHERE upstream_id IS NOT NULL")]
    if len(ids) != len(created):
        raise RuntimeError("created videos lack upstream ids")
    return ids
