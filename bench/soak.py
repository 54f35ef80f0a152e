"""The soak with faults (`make soak`): renders through the simulator for a bounded time while things break.

Faults while renders are created (catalogue rows 59-62 in spirit, at this machine's scale):
- a random worker is SIGKILLed every 30 s and a new one started in its place;
- every few minutes, `pg_terminate_backend` on every connection of the gateway's database;
- SeaweedFS is stopped and started again once, about a third of the way in;
- the simulator drops 20 % of webhooks and sends another 20 % twice (the reconciler must find the lost ones).

Renders are created at the pace the stack sustains (a bounded backlog), up to `--renders` (10,000) or the
deadline (`--minutes`, 20), whichever comes first; every tenth batch has an MP4 above the part size, so
multipart uploads are cut off by the kills too. Then the faults stop and the stack drains for a bounded
grace. Invariants checked at the end, each from an independent source where there is one:
every video terminal; no asset lost (each completed video has its three assets archived); every archived
asset's SHA-256 equals that of the bytes the simulator serves (hashed here) and of the S3 object (hashed
here); no incomplete multipart upload left (ListMultipartUploads, after the janitor); no callback missing
(the local receiver got a terminal event for every video). Exit code 1 when any invariant fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.archive.storage import make_client
from app.dev.processes import ManagedProcess, free_port
from bench import report
from bench.drive import create_videos_async
from bench.stack import (
    SIMULATOR_KEY,
    BenchStack,
    MiB,
    private_seaweedfs,
    rows,
    running_stack,
    throwaway_database,
)

WORKERS = 3
KILL_EVERY_SECONDS = 30.0
BATCH = 10
MAX_BACKLOG = 150  # renders created but not yet settled; creation waits below this
SMALL_VIDEO = 256 * 1024
LARGE_VIDEO = 6 * MiB  # above the 5 MiB part size below: a multipart upload
TERMINAL_CALLBACKS = ("video.archived", "video.failed", "video.archive_failed")

SOAK_ENV = {
    "VG_S3__PART_SIZE_BYTES": str(5 * MiB),
    "VG_WORKER__CONCURRENCY": "4",
    # Shorter leases than production (30 s) so a killed worker's jobs come back within a soak's minutes.
    "VG_WORKER__LEASE_SECONDS": "10",
    "VG_WORKER__HEARTBEAT_SECONDS": "3",
    "VG_WORKER__RETRY_BASE_SECONDS": "0.5",
    "VG_WORKER__RETRY_MAX_SECONDS": "10",
    "VG_WORKER__RECONCILE_INTERVAL_SECONDS": "5",
    # Uploads here take seconds; anything open for a minute was left by a killed worker.
    "VG_WORKER__STALE_UPLOAD_SECONDS": "60",
    "VG_WORKER__SHUTDOWN_GRACE_SECONDS": "5",
    "VG_SIMULATOR__QUEUE_SECONDS": "0.2",
    "VG_SIMULATOR__RENDER_SECONDS": "1",
    "VG_SIMULATOR__WEBHOOK_MAX_ATTEMPTS": "8",
    "VG_CALLBACKS__RETRY_SCHEDULE_SECONDS": "[2, 5, 10, 20]",
    "VG_CALLBACKS__MAX_ATTEMPTS": "20",
}


class Faults(threading.Thread):
    """Injects the faults on a schedule until told to stop; counts what it did."""

    def __init__(self, stack: BenchStack, restart_s3: Callable[[], None], *, minutes: float) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.stack = stack
        self.restart_s3 = restart_s3
        self.stop_event = threading.Event()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        total = minutes * 60
        # Every 30 s as asked; a soak shorter than two minutes scales it down so it still kills a few.
        self.kill_every = min(KILL_EVERY_SECONDS, max(5.0, total / 4))
        self.pg_every = min(180.0, max(20.0, total / 4))
        self.s3_restart_at = total / 3

    def run(self) -> None:
        started = time.monotonic()
        next_kill = started + self.kill_every
        next_pg = started + self.pg_every
        s3_restarted = False
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            try:
                if now >= next_kill:
                    next_kill = now + self.kill_every
                    self.kill_worker()
                if now >= next_pg:
                    next_pg = now + self.pg_every
                    self.counts["postgres connections terminated"] += terminate_backends(self.stack.dsn)
                    self.counts["pg_terminate_backend rounds"] += 1
                if not s3_restarted and now - started >= self.s3_restart_at:
                    s3_restarted = True
                    self.restart_s3()
                    self.counts["SeaweedFS restarts"] += 1
            except Exception as error:  # a fault that fails to fire is reported, not fatal
                self.errors.append(f"{type(error).__name__}: {error}")

    def kill_worker(self) -> None:
        live = [worker for worker in self.stack.workers if worker.alive()]
        if live:
            victim = random.choice(live)
            victim.signal(signal.SIGKILL)
            assert victim.process is not None
            victim.process.wait(timeout=10)
            victim.stop()
            self.stack.workers.remove(victim)
            self.counts["workers SIGKILLed"] += 1
        while len([worker for worker in self.stack.workers if worker.alive()]) < WORKERS:
            self.stack.start_worker()


def terminate_backends(dsn: str) -> int:
    async def terminate() -> int:
        connection = await asyncpg.connect(dsn)
        try:
            name = dsn.rsplit("/", 1)[1]
            count: int = await connection.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                name,
            )
            return count
        finally:
            await connection.close()

    return asyncio.run(terminate())


async def _backlog(dsn: str) -> int:
    connection = await asyncpg.connect(dsn)
    try:
        value: int = await connection.fetchval(
            "SELECT count(*) FROM videos v WHERE v.status NOT IN ('completed', 'failed') "
            "OR EXISTS (SELECT 1 FROM assets a WHERE a.video_id = v.id AND a.state = 'pending')"
        )
        return value
    finally:
        await connection.close()


def _safe_backlog(dsn: str) -> int:
    try:
        return asyncio.run(_backlog(dsn))
    except (OSError, asyncpg.PostgresError):  # its connection was just terminated: ask again next time
        return 1


def create_until(stack: BenchStack, *, deadline: float, renders: int, callback_url: str) -> tuple[int, int]:
    """Create renders in batches while the backlog allows, until the deadline or `renders`; returns
    (created, create errors)."""
    keys = [stack.new_caller_key() for _ in range(4)]
    created = errors = batches = 0
    while created < renders and time.monotonic() < deadline:
        try:
            if asyncio.run(_backlog(stack.dsn)) >= MAX_BACKLOG:
                time.sleep(0.5)
                continue
            size = LARGE_VIDEO if batches % 10 == 9 else SMALL_VIDEO
            stack.sim_faults(synthetic_asset_bytes=size)
            count = min(BATCH, renders - created)
            made = asyncio.run(
                create_videos_async(
                    stack.api_url, keys, count, concurrency=BATCH, prompt=f"soak {batches}", callback_url=callback_url
                )
            )
            created += len(made)
            batches += 1
        except Exception as error:  # a create refused while Postgres connections are being killed
            errors += 1
            sys.stderr.write(f"[soak] create batch failed: {error}\n")
            time.sleep(1)
    return created, errors


async def _settled(dsn: str) -> dict[str, int]:
    connection = await asyncpg.connect(dsn)
    try:
        record = await connection.fetchrow(
            "SELECT (SELECT count(*) FROM videos WHERE status NOT IN ('completed', 'failed')) AS unfinished, "
            "(SELECT count(*) FROM assets WHERE state IN ('pending', 'downloading')) AS unsettled_assets, "
            "(SELECT count(*) FROM callback_deliveries WHERE state = 'pending') AS pending_callbacks"
        )
        return dict(record) if record is not None else {}
    finally:
        await connection.close()


def drain(stack: BenchStack, *, grace: float) -> float:
    """Wait (bounded) until nothing is unfinished, pending or open in S3; returns the seconds it took."""
    started = time.monotonic()
    while time.monotonic() - started < grace:
        try:
            state = asyncio.run(_settled(stack.dsn))
            if not any(state.values()) and not open_uploads(stack):
                break
        except Exception as error:
            sys.stderr.write(f"[soak] drain check failed: {error}\n")
        time.sleep(2)
    return time.monotonic() - started


def open_uploads(stack: BenchStack) -> list[str]:
    client = make_client(stack.s3)
    try:
        listing = client.list_multipart_uploads(Bucket=stack.s3.bucket, Prefix=stack.s3.prefix.strip("/") + "/")
        return [upload["Key"] for upload in listing.get("Uploads", [])]
    finally:
        client.close()


async def _digests(stack: BenchStack, assets: list[asyncpg.Record]) -> tuple[int, int, list[str]]:
    """(simulator mismatches, S3 mismatches, examples) over every archived asset, each hashed here."""
    semaphore = asyncio.Semaphore(16)
    s3 = make_client(stack.s3)
    problems: list[str] = []
    sim_bad = s3_bad = 0

    async with httpx.AsyncClient(
        base_url=stack.simulator_url, headers={"authorization": f"Bearer {SIMULATOR_KEY}"}, timeout=120
    ) as client:

        async def check(asset: asyncpg.Record) -> None:
            nonlocal sim_bad, s3_bad
            async with semaphore:
                hasher = hashlib.sha256()
                async with client.stream(
                    "GET", f"/v1/videos/{asset['upstream_id']}/content", params={"variant": asset["variant"]}
                ) as response:
                    if response.status_code != 200:
                        sim_bad += 1
                        problems.append(f"{asset['s3_key']}: simulator {response.status_code}")
                        return
                    async for chunk in response.aiter_bytes(256 * 1024):
                        hasher.update(chunk)
                if hasher.hexdigest() != asset["sha256"]:
                    sim_bad += 1
                    problems.append(f"{asset['s3_key']}: simulator sha256 differs")

                def s3_sha() -> str:
                    body = s3.get_object(Bucket=stack.s3.bucket, Key=asset["s3_key"])["Body"]
                    object_hasher = hashlib.sha256()
                    for chunk in iter(lambda: body.read(256 * 1024), b""):
                        object_hasher.update(chunk)
                    return object_hasher.hexdigest()

                if await asyncio.to_thread(s3_sha) != asset["sha256"]:
                    s3_bad += 1
                    problems.append(f"{asset['s3_key']}: S3 object sha256 differs")

        try:
            await asyncio.gather(*(check(asset) for asset in assets))
        finally:
            s3.close()
    return sim_bad, s3_bad, problems[:5]


def check_invariants(stack: BenchStack, callback_log: Path) -> dict[str, dict[str, Any]]:
    videos = rows(stack.dsn, "SELECT id, upstream_id, status, error_code, callback_url FROM videos")
    statuses = Counter(video["status"] for video in videos)
    unfinished = [video["id"] for video in videos if video["status"] not in ("completed", "failed")]
    assets = rows(
        stack.dsn,
        "SELECT a.video_id, a.variant, a.state, a.s3_key, a.sha256, v.upstream_id FROM assets a "
        "JOIN videos v ON v.id = a.video_id WHERE v.status = 'completed'",
    )
    completed = [video["id"] for video in videos if video["status"] == "completed"]
    archived_by_video = Counter(asset["video_id"] for asset in assets if asset["state"] == "archived")
    lost = [video_id for video_id in completed if archived_by_video[video_id] != 3]
    asset_states = Counter(asset["state"] for asset in assets)
    archived = [asset for asset in assets if asset["state"] == "archived"]
    sim_bad, s3_bad, examples = asyncio.run(_digests(stack, archived))
    uploads = open_uploads(stack)
    received: dict[str, set[str]] = {}
    if callback_log.exists():
        for line in callback_log.read_text().splitlines():
            event = json.loads(line)
            if event["type"] in TERMINAL_CALLBACKS and event["video_id"]:
                received.setdefault(event["video_id"], set()).add(event["type"])
    expected_callbacks = [video["id"] for video in videos if video["callback_url"]]
    missing = [video_id for video_id in expected_callbacks if video_id not in received]
    failed_codes = Counter(video["error_code"] for video in videos if video["status"] == "failed")
    return {
        "every video terminal": {
            "ok": not unfinished,
            "detail": f"{len(videos)} videos: {dict(statuses)}"
            + (f"; failed by code {dict(failed_codes)}" if failed_codes else ""),
        },
        "no asset lost": {
            "ok": not lost,
            "detail": f"{len(completed)} completed videos, assets {dict(asset_states)}; {len(lost)} without 3 archived",
        },
        "SHA-256 equals the simulator's and the S3 object's": {
            "ok": sim_bad == 0 and s3_bad == 0,
            "detail": f"{len(archived)} archived assets hashed from both; {sim_bad} differ from the simulator, "
            f"{s3_bad} from S3" + (f"; e.g. {examples}" if examples else ""),
        },
        "no incomplete multipart upload": {
            "ok": not uploads,
            "detail": f"{len(uploads)} open after the janitor" + (f": {uploads[:3]}" if uploads else ""),
        },
        "no callback missing": {
            "ok": not missing,
            "detail": f"{len(expected_callbacks)} videos with a callback_url, {len(received)} got a terminal "
            f"event, {len(missing)} missing",
        },
    }


def main(*, minutes: float, renders: int, out: str | None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vg-soak-"))
    started_at = datetime.now(UTC)
    callback_log = workdir / "callbacks.jsonl"
    callback_port = free_port()
    grace = max(90.0, minutes * 60 * 0.25)
    result: dict[str, Any] = {
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "started_at": started_at.isoformat(timespec="seconds"),
        "minutes": minutes,
        "renders_asked": renders,
        "machine": report.machine(),
        "git": report.git_commit(),
        "workdir": str(workdir),
    }
    receiver = ManagedProcess(
        "callback-receiver",
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.receiver:app",
            "--host",
            "127.0.0.1",
            "--port",
            str(callback_port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        {"BENCH_CALLBACK_LOG": str(callback_log)},
        workdir / "logs" / "receiver.log",
    )
    try:
        receiver.start()
        receiver.wait_http(f"http://127.0.0.1:{callback_port}/", timeout=60)
        with (
            throwaway_database("vg_soak") as dsn,
            private_seaweedfs(workdir / "seaweedfs") as weed,
            running_stack(dsn=dsn, s3=weed.settings, workdir=workdir, workers=WORKERS, env=SOAK_ENV) as stack,
        ):
            stack.sim_faults(webhook_drop_probability=0.2, webhook_duplicate_probability=0.2)
            faults = Faults(stack, weed.restart, minutes=minutes)
            faults.start()
            began = time.monotonic()
            sys.stderr.write(f"[soak] {minutes} min, up to {renders} renders; logs in {workdir / 'logs'}\n")
            try:
                created, create_errors = create_until(
                    stack,
                    deadline=began + minutes * 60,
                    renders=renders,
                    callback_url=f"http://127.0.0.1:{callback_port}/callbacks",
                )
                # Renders asked for all created early: the faults go on while the backlog is worked off.
                while time.monotonic() < began + minutes * 60 and _safe_backlog(stack.dsn) > 0:
                    time.sleep(1)
            finally:
                faults.stop_event.set()
                faults.join(timeout=120)
            # Make sure the full complement of workers is up for the drain (one may have just been killed).
            while len([w for w in stack.workers if w.alive()]) < WORKERS:
                stack.start_worker()
            sys.stderr.write(f"[soak] created {created}; draining (at most {grace:.0f} s)\n")
            drain_seconds = drain(stack, grace=grace)
            sys.stderr.write("[soak] checking invariants\n")
            invariants = check_invariants(stack, callback_log)
            result.update(
                {
                    "renders_created": created,
                    # Counted by the database: a batch with one refused create still made the others.
                    "videos_in_db": rows(stack.dsn, "SELECT count(*) FROM videos")[0][0],
                    "create_batch_errors": create_errors,
                    "create_seconds": time.monotonic() - began - drain_seconds,
                    "drain_seconds": drain_seconds,
                    "faults": {
                        **dict(faults.counts),
                        "webhooks dropped / duplicated": "20 % / 20 % (simulator)",
                        "fault errors": len(faults.errors),
                    },
                    "fault_errors": faults.errors[:10],
                    "invariants": invariants,
                }
            )
    finally:
        receiver.stop()
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    ok = all(check["ok"] for check in result["invariants"].values())
    result["ok"] = ok
    out_dir = Path(out) if out else report.RESULTS_DIR
    path = report.write_json(result, out_dir, f"soak-{report.today()}.json")
    for name, check in result["invariants"].items():
        sys.stdout.write(f"{'ok  ' if check['ok'] else 'FAIL'} {name}: {check['detail']}\n")
    sys.stdout.write(f"faults: {result['faults']}\nresults: {path}\n")
    if out is None:
        sys.stdout.write(f"doc: {report.write_doc()}\n")
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        sys.stdout.write(f"logs kept in {workdir / 'logs'}\n")
    return 0 if ok else 1
