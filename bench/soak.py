"""The soak with faults (`make soak`): renders through the simulator for a bounded time while things break.

Faults while renders are created (docs/reliability.md rows 59-62 in spirit, at this machine's scale):
- a random worker is SIGKILLed every 30 s and a new one started in its place;
- the API runs as two processes on two ports, creates spread over both; every 2.5 min one of them is
  SIGKILLed and started again on the same port (the simulator's webhooks go to the first one, so they fail
  while it is down and are retried);
- the soak runs its own Postgres cluster (`initdb` on a free port, a temp directory, trust auth, fsync off),
  restarted for real once, half way in (`pg_ctl restart -m fast`), while renders and downloads run; it is
  stopped and removed at the end, also on a failure or Ctrl-C. Without `initdb` (or with
  BENCH_SOAK_SHARED_POSTGRES=1) it falls back, saying so, to a throwaway database on 127.0.0.1:5432, where
  there is no restart (that server is shared);
- every few minutes, `pg_terminate_backend` on every connection of the gateway's database;
- SeaweedFS is stopped and started again once, about a third of the way in;
- the simulator drops 20 % of webhooks and sends another 20 % twice (the reconciler must find the lost ones);
- the workers prune with minutes of retention (SOAK_WORKER_ENV): finished jobs and callback attempts are deleted
  two minutes after they finished, webhook events ten minutes after they came (past the simulators' redeliveries),
  a pass every 20 s in batches of 100, so the pruner runs all along beside the queue it must not get in the way of.
  The rows it deleted are reported (`pruned_rows`, from pg_stat_user_tables: nothing else deletes there).

Providers are mixed: one render in five goes to a live provider's simulator (Seedance, fal and Replicate in
turn, each behind its own profile and kind, each with its own webhook scheme), the others to the OpenAI
contract's simulator. The live kinds serve only the MP4: the archive derives their thumbnail and spritesheet.

Every create carries an `Idempotency-Key`. A create cut off (connection refused or reset, 503, 409 "still in
progress") is retried with the same key and body, on the other API when the first is down; a create still
unresolved after a while (its API died holding the claim) is asked again at the end, and if the gateway says
`idempotency_request_unfinished` it is looked up by listing the caller's videos (its prompt is unique), else
counted as "outcome unknown".

Renders are created at the pace the stack sustains (a bounded backlog), up to `--renders` (10,000) or the
deadline (`--minutes`, 20), whichever comes first; every tenth batch has an MP4 above the part size, so
multipart uploads are cut off by the kills too. Then the faults stop and the stack drains for a bounded
grace. Invariants checked at the end, each from an independent source where there is one:
every video terminal; no asset lost (each completed video has its three assets archived); every archived
asset's SHA-256 equals that of the bytes the simulator serves (hashed here; for a live kind the MP4, found
through the provider's own API, while the derived images have no upstream copy) and of the S3 object (hashed
here); the integrity audit (`video-gateway audit`: every archived object HEADed, present with the recorded
size; none marked `lost`); no incomplete multipart upload left (ListMultipartUploads, after the janitor); no
callback missing (the local receiver got a terminal event for every video); every create the gateway
acknowledged is in its database; no render a simulator made is missing from the gateway (the OpenAI
simulator's ids against the gateway's upstream ids; for each live kind, the renders its simulator counts
against the gateway's videos with an upstream id on that profile); no 5xx answered outside a fault window
(an API down, Postgres restarted or its connections terminated, and 15 s after). Exit code 1 when any invariant fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from app.archive.storage import make_client
from app.dev.processes import ManagedProcess, free_port, gateway_command
from bench import report
from bench.stack import (
    LIVE_RENDERS,
    SIMULATOR_KEY,
    BenchStack,
    MiB,
    PrivatePostgres,
    private_postgres,
    private_seaweedfs,
    rows,
    running_stack,
    throwaway_database,
)

WORKERS = 3
KILL_EVERY_SECONDS = 30.0
API_KILL_EVERY_SECONDS = 150.0
FAULT_MARGIN_SECONDS = 15.0  # a 5xx this long after a fault ended still counts as the fault's
CREATE_PATIENCE_SECONDS = 30.0  # then a create still unresolved is set aside and asked again at the end
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
    "VG_WORKER__JANITOR_INTERVAL_SECONDS": "15",
    "VG_WORKER__SHUTDOWN_GRACE_SECONDS": "5",
    "VG_SIMULATOR__QUEUE_SECONDS": "0.2",
    "VG_SIMULATOR__RENDER_SECONDS": "1",
    "VG_SIMULATOR__WEBHOOK_MAX_ATTEMPTS": "8",
    "VG_CALLBACKS__RETRY_SCHEDULE_SECONDS": "[2, 5, 10, 20]",
    "VG_CALLBACKS__MAX_ATTEMPTS": "20",
    # A create cut off by a SIGKILLed API: upstream's timeout bounds how long its claim stays "in progress"
    # (then `idempotency_request_unfinished`), and its video without an upstream id is settled after this.
    "VG_UPSTREAM__TIMEOUT_SECONDS": "20",
    "VG_WORKER__UNSUBMITTED_AFTER_SECONDS": "90",
}

MINUTE_IN_DAYS = 1 / (24 * 60)
PRUNED_TABLES = ("archive_jobs", "webhook_events", "callback_attempts")
# The workers' retention (app/archive/pruner.py), in minutes rather than days so it prunes within a soak. Webhook
# events outlive the simulators' redeliveries (8 attempts, 1 s doubling: about two minutes).
SOAK_WORKER_ENV = {
    "VG_RETENTION__ARCHIVE_JOBS_DAYS": repr(2 * MINUTE_IN_DAYS),
    "VG_RETENTION__CALLBACK_ATTEMPTS_DAYS": repr(2 * MINUTE_IN_DAYS),
    "VG_RETENTION__WEBHOOK_EVENTS_DAYS": repr(10 * MINUTE_IN_DAYS),
    "VG_RETENTION__INTERVAL_SECONDS": "20",
    "VG_RETENTION__BATCH_SIZE": "100",
}


@dataclass
class ApiPool:
    """The API as two processes on two ports (the stack's, which gets the webhooks, and a second one)."""

    processes: list[ManagedProcess]
    urls: list[str]
    kills: int = 0

    def kill_and_restart(self, index: int) -> None:
        """SIGKILL one API process and start it again on the same port; returns once it answers."""
        victim = self.processes[index]
        victim.signal(signal.SIGKILL)
        if victim.process is not None:
            victim.process.wait(timeout=10)
        victim.stop()
        self.kills += 1
        victim.start()
        victim.wait_http(f"{self.urls[index]}/healthz", timeout=120)


class Faults(threading.Thread):
    """Injects the faults on a schedule until told to stop; counts what it did and when (`windows`)."""

    def __init__(
        self,
        stack: BenchStack,
        restart_s3: Callable[[], None],
        *,
        minutes: float,
        apis: ApiPool,
        postgres: PrivatePostgres | None,
    ) -> None:
        super().__init__(name="soak-faults", daemon=True)
        self.stack = stack
        self.restart_s3 = restart_s3
        self.apis = apis
        self.postgres = postgres
        self.stop_event = threading.Event()
        self.counts: Counter[str] = Counter()
        self.errors: list[str] = []
        # (start, end, what), monotonic: a 5xx inside one (plus FAULT_MARGIN_SECONDS) is the fault's.
        self.windows: list[tuple[float, float, str]] = []
        total = minutes * 60
        # Every 30 s as asked; a soak shorter than two minutes scales it down so it still kills a few.
        self.kill_every = min(KILL_EVERY_SECONDS, max(5.0, total / 4))
        self.pg_every = min(180.0, max(20.0, total / 4))
        self.s3_restart_at = total / 3
        self.api_kill_every = min(API_KILL_EVERY_SECONDS, max(10.0, total / 3))
        self.pg_restart_at = total / 2

    def _window(self, what: str, action: Callable[[], Any]) -> Any:
        began = time.monotonic()
        try:
            return action()
        finally:
            self.windows.append((began, time.monotonic(), what))

    def run(self) -> None:
        started = time.monotonic()
        next_kill = started + self.kill_every
        next_pg = started + self.pg_every
        next_api_kill = started + self.api_kill_every
        s3_restarted = pg_restarted = False
        while not self.stop_event.wait(0.5):
            now = time.monotonic()
            try:
                if now >= next_kill:
                    next_kill = now + self.kill_every
                    self.kill_worker()
                if now >= next_api_kill:
                    next_api_kill = now + self.api_kill_every
                    index = self.apis.kills % len(self.apis.processes)
                    self._window("API SIGKILLed", functools.partial(self.apis.kill_and_restart, index))
                    self.counts["API processes SIGKILLed and restarted"] += 1
                if now >= next_pg:
                    next_pg = now + self.pg_every
                    self.counts["postgres connections terminated"] += self._window(
                        "pg_terminate_backend", lambda: terminate_backends(self.stack.dsn)
                    )
                    self.counts["pg_terminate_backend rounds"] += 1
                if self.postgres is not None and not pg_restarted and now - started >= self.pg_restart_at:
                    pg_restarted = True
                    self._window("Postgres restart", self.postgres.restart)
                    self.counts["Postgres restarts (pg_ctl restart -m fast)"] += 1
                if not s3_restarted and now - started >= self.s3_restart_at:
                    s3_restarted = True
                    self.restart_s3()
                    self.counts["SeaweedFS restarts"] += 1
            except Exception as error:  # a fault that fails to fire is reported, not fatal
                self.errors.append(f"{type(error).__name__}: {error}")

    def in_window(self, at: float) -> bool:
        return any(start - 1 <= at <= end + FAULT_MARGIN_SECONDS for start, end, _ in self.windows)

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


def _safe_backlog(dsn: str, *, unknown: int = 1) -> int:
    try:
        return asyncio.run(_backlog(dsn))
    except (OSError, asyncpg.PostgresError):  # its connection was just cut, or Postgres restarts: ask again
        return unknown


@dataclass
class Render:
    """One render asked of the gateway: its caller, its Idempotency-Key and its body (the same on every try)."""

    caller_key: str
    idempotency_key: str
    body: dict[str, Any]
    video_id: str | None = None
    outcome: str = "unresolved"  # created | refused (a final 4xx/5xx answer) | unresolved | unknown


@dataclass
class CreateLog:
    """What the soak's client saw: every render asked, answers by status, and every 5xx with when."""

    renders: list[Render] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    server_errors: list[tuple[float, int, str]] = field(default_factory=list)  # (monotonic, status, code)
    retries: int = 0


def _code(response: httpx.Response) -> str:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code") or error.get("type") or "")
    except ValueError:
        return ""


async def _create_one(
    client: httpx.AsyncClient, urls: list[str], render: Render, number: int, log: CreateLog, *, patience: float
) -> None:
    """Create one render, retrying with the same key (and the other API when this one is down)."""
    headers = {"authorization": f"Bearer {render.caller_key}", "idempotency-key": render.idempotency_key}
    give_up = time.monotonic() + patience
    attempt = 0
    while time.monotonic() < give_up:
        url = urls[(number + attempt) % len(urls)]
        attempt += 1
        if attempt > 1:
            log.retries += 1
        try:
            response = await client.post(f"{url}/v1/videos", json=render.body, headers=headers)
        except httpx.TransportError as error:  # the API was killed under us, or is not back yet
            log.statuses[type(error).__name__] += 1
            await asyncio.sleep(0.3)
            continue
        log.statuses[str(response.status_code)] += 1
        code = _code(response)
        if response.status_code >= 500:
            log.server_errors.append((time.monotonic(), response.status_code, code))
        if response.status_code == 200:
            render.video_id, render.outcome = response.json()["id"], "created"
            return
        if response.status_code == 409 and code == "idempotency_request_unfinished":
            return  # its first try died with an API: looked up at the end
        if response.status_code in (409, 429, 503):
            await asyncio.sleep(min(2.0, float(response.headers.get("retry-after", "0.5") or 0.5)))
            continue
        render.outcome = "refused"
        sys.stderr.write(f"[soak] create {render.idempotency_key}: {response.status_code} {response.text[:200]}\n")
        return


async def _create_batch(urls: list[str], renders: list[Render], log: CreateLog, *, patience: float) -> None:
    limits = httpx.Limits(max_connections=2 * BATCH, max_keepalive_connections=2 * BATCH)
    async with httpx.AsyncClient(timeout=60.0, limits=limits) as client:
        await asyncio.gather(
            *(
                _create_one(client, urls, render, number, log, patience=patience)
                for number, render in enumerate(renders)
            )
        )


LIVE_KINDS = tuple(LIVE_RENDERS)
LIVE_SHARE = 5  # one render in five goes to a live provider


def render_target(index: int) -> dict[str, str]:
    """Model, seconds and size of the `index`th render: every fifth to a live kind in turn, else OpenAI's."""
    if index % LIVE_SHARE != LIVE_SHARE - 1:
        return {"seconds": "4", "size": "720x1280"}
    render = LIVE_RENDERS[LIVE_KINDS[(index // LIVE_SHARE) % len(LIVE_KINDS)]]
    return {"model": render.model, "seconds": render.seconds, "size": render.size}


def create_until(
    stack: BenchStack, urls: list[str], *, deadline: float, renders: int, callback_url: str
) -> tuple[CreateLog, list[str]]:
    """Create renders in batches while the backlog allows, until the deadline or `renders`; returns the
    client's log and the callers' keys."""
    keys = [stack.new_caller_key() for _ in range(4)]
    log = CreateLog()
    batches = 0
    while len(log.renders) < renders and time.monotonic() < deadline:
        if _safe_backlog(stack.dsn, unknown=MAX_BACKLOG) >= MAX_BACKLOG:
            time.sleep(0.5)
            continue
        size = LARGE_VIDEO if batches % 10 == 9 else SMALL_VIDEO
        try:
            stack.sim_faults(synthetic_asset_bytes=size)
        except httpx.HTTPError as error:
            sys.stderr.write(f"[soak] simulator knob: {error}\n")
        batch = [
            Render(
                caller_key=keys[(len(log.renders) + number) % len(keys)],
                idempotency_key=str(uuid.uuid4()),
                body={
                    "prompt": f"soak {batches} #{number} {uuid.uuid4().hex[:12]}",
                    **render_target(len(log.renders) + number),
                    "callback_url": callback_url,
                },
            )
            for number in range(min(BATCH, renders - len(log.renders)))
        ]
        log.renders += batch
        asyncio.run(_create_batch(urls, batch, log, patience=CREATE_PATIENCE_SECONDS))
        batches += 1
    return log, keys


async def _listed_by_prompt(url: str, keys: list[str]) -> dict[tuple[str, str], str]:
    """(caller key, prompt) → video id, over every video of the callers, listed through the gateway."""
    found: dict[tuple[str, str], str] = {}
    async with httpx.AsyncClient(base_url=url, timeout=60.0) as client:
        for key in keys:
            after: str | None = None
            while True:
                params: dict[str, Any] = {"limit": 100, "order": "asc"}
                if after:
                    params["after"] = after
                page = (
                    (await client.get("/v1/videos", params=params, headers={"authorization": f"Bearer {key}"}))
                    .raise_for_status()
                    .json()
                )
                for video in page["data"]:
                    found[(key, video.get("prompt") or "")] = video["id"]
                if not page.get("has_more") or not page["data"]:
                    break
                after = page["data"][-1]["id"]
    return found


async def _resolve(urls: list[str], keys: list[str], log: CreateLog) -> Counter[str]:
    """Ask again, with the same key, every create left unresolved; then look up by listing what the gateway
    says never finished. Returns how each was resolved."""
    how: Counter[str] = Counter()
    pending = [render for render in log.renders if render.outcome == "unresolved"]
    if not pending:
        return how
    await _create_batch(urls, pending, log, patience=60.0)
    how["answered when asked again"] = sum(render.outcome != "unresolved" for render in pending)
    still = [render for render in pending if render.outcome == "unresolved"]
    if still:
        listed = await _listed_by_prompt(urls[0], keys)
        for render in still:
            video_id = listed.get((render.caller_key, render.body["prompt"]))
            if video_id is not None:
                render.video_id, render.outcome = video_id, "created"
                how["found by listing"] += 1
            else:
                render.outcome = "unknown"
                how["outcome unknown (not in the gateway)"] += 1
    return how


def live_made(stack: BenchStack) -> dict[str, int]:
    """How many renders each live kind's simulator made (its own count of accepted creates)."""
    created_keys = {"seedance": "tasks_created", "fal": "requests_created", "replicate": "predictions_created"}
    made: dict[str, int] = {}
    for kind in stack.live_urls:
        with stack.live_sim(kind) as client:
            made[kind] = int(client.get("/_sim/stats").raise_for_status().json()[created_keys[kind]])
    return made


def simulator_ids(stack: BenchStack) -> set[str]:
    """Every render the simulator made, from its own listing."""
    ids: set[str] = set()
    after: str | None = None
    with stack.sim() as client:
        while True:
            params: dict[str, Any] = {"limit": 100, "order": "asc"}
            if after:
                params["after"] = after
            page = client.get("/v1/videos", params=params).raise_for_status().json()
            ids.update(video["id"] for video in page["data"])
            if not page.get("has_more") or not page["data"]:
                return ids
            after = page["data"][-1]["id"]


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
                kind = asset["upstream_profile"]
                if kind in LIVE_RENDERS and asset["variant"] != "video":
                    await compare_with_s3(asset)  # derived by the archive: upstream has no copy to compare
                    return
                if kind in LIVE_RENDERS:
                    file_url = await asyncio.to_thread(stack.live_file_url, kind, asset["upstream_id"])
                    request = client.build_request("GET", file_url or f"{stack.live_urls[kind]}/missing")
                else:
                    request = client.build_request(
                        "GET", f"/v1/videos/{asset['upstream_id']}/content", params={"variant": asset["variant"]}
                    )
                response = await client.send(request, stream=True)
                try:
                    if response.status_code != 200:
                        sim_bad += 1
                        problems.append(f"{asset['s3_key']}: simulator {response.status_code}")
                        return
                    async for chunk in response.aiter_bytes(256 * 1024):
                        hasher.update(chunk)
                finally:
                    await response.aclose()
                if hasher.hexdigest() != asset["sha256"]:
                    sim_bad += 1
                    problems.append(f"{asset['s3_key']}: simulator sha256 differs")

                await compare_with_s3(asset)

        async def compare_with_s3(asset: asyncpg.Record) -> None:
            nonlocal s3_bad

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


def _audit_available() -> bool:
    done = subprocess.run([*gateway_command("audit", "--help")], capture_output=True, text=True, timeout=120)
    return done.returncode == 0


def integrity_audit(stack: BenchStack, archived: list[asyncpg.Record]) -> dict[str, Any]:
    """Every archived object HEADed: `video-gateway audit` when the gateway has it (its exit code and counts),
    else each object HEADed here (present, ContentLength equal to the recorded bytes)."""
    if _audit_available():
        done = subprocess.run(
            gateway_command("audit", "--limit", str(len(archived) + 100)),
            env={**os.environ, **stack.env, "COLUMNS": "200"},
            capture_output=True,
            text=True,
            timeout=1800,
        )
        match = re.search(r"(\d+) object\(s\) checked .*?, (\d+) intact", done.stdout)
        checked, intact = (int(match[1]), int(match[2])) if match else (0, 0)
        lost = rows(stack.dsn, "SELECT count(*) FROM assets WHERE state = 'lost'")[0][0]
        tail = " / ".join(line.strip() for line in done.stdout.splitlines()[-3:] if line.strip())
        return {
            "ok": done.returncode == 0 and checked == intact == len(archived) and lost == 0,
            "detail": f"`video-gateway audit` exit {done.returncode}: {checked} objects HEADed, {intact} intact "
            f"(of {len(archived)} archived); {lost} assets `lost`"
            + ("" if done.returncode == 0 else f"; {tail[:300]} {done.stderr[-300:]}"),
        }
    client = make_client(stack.s3)
    bad: list[str] = []
    try:
        for asset in archived:
            try:
                length = client.head_object(Bucket=stack.s3.bucket, Key=asset["s3_key"])["ContentLength"]
            except Exception as error:
                bad.append(f"{asset['s3_key']}: {type(error).__name__}")
                continue
            if length != asset["bytes"]:
                bad.append(f"{asset['s3_key']}: {length} bytes, {asset['bytes']} recorded")
    finally:
        client.close()
    return {
        "ok": not bad,
        "detail": f"no `video-gateway audit` here: {len(archived)} objects HEADed by the soak, {len(bad)} missing "
        "or of another size" + (f"; e.g. {bad[:3]}" if bad else ""),
    }


def check_invariants(
    stack: BenchStack, callback_log: Path, log: CreateLog, resolved: Counter[str], faults: Faults
) -> dict[str, dict[str, Any]]:
    videos = rows(stack.dsn, "SELECT id, upstream_id, upstream_profile, status, error_code, callback_url FROM videos")
    statuses = Counter(video["status"] for video in videos)
    unfinished = [video["id"] for video in videos if video["status"] not in ("completed", "failed")]
    assets = rows(
        stack.dsn,
        "SELECT a.video_id, a.variant, a.state, a.s3_key, a.sha256, a.bytes, v.upstream_id, v.upstream_profile "
        "FROM assets a "
        "JOIN videos v ON v.id = a.video_id WHERE v.status = 'completed'",
    )
    completed = [video["id"] for video in videos if video["status"] == "completed"]
    archived_by_video = Counter(asset["video_id"] for asset in assets if asset["state"] == "archived")
    lost = [video_id for video_id in completed if archived_by_video[video_id] != 3]
    asset_states = Counter(asset["state"] for asset in assets)
    archived = [asset for asset in assets if asset["state"] == "archived"]
    sim_bad, s3_bad, examples = asyncio.run(_digests(stack, archived))
    audited = integrity_audit(stack, archived)
    uploads = open_uploads(stack)
    gateway_ids = {video["id"] for video in videos}
    acknowledged = [render.video_id for render in log.renders if render.video_id is not None]
    not_in_gateway = [video_id for video_id in acknowledged if video_id not in gateway_ids]
    upstream_ids = {
        video["upstream_id"] for video in videos if video["upstream_id"] and video["upstream_profile"] == "default"
    }
    made = simulator_ids(stack)
    missing_upstream = sorted(made - upstream_ids)
    # The live kinds: each simulator's own count of renders against the gateway's videos it knows there.
    live_known = Counter(
        video["upstream_profile"]
        for video in videos
        if video["upstream_id"] and video["upstream_profile"] in LIVE_RENDERS
    )
    live_counts = {kind: (count, live_known[kind]) for kind, count in live_made(stack).items()}
    live_missing = {kind: made_there - known for kind, (made_there, known) in live_counts.items() if made_there > known}
    outcomes = Counter(render.outcome for render in log.renders)
    stray = [(status, code) for at, status, code in log.server_errors if not faults.in_window(at)]
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
        "integrity audit: every archived object present with its recorded size, none lost": audited,
        "every acknowledged create is in the gateway": {
            "ok": not not_in_gateway,
            "detail": f"{len(log.renders)} renders asked: {dict(outcomes)}; unresolved creates "
            f"{dict(resolved) or 'none'}; {len(acknowledged)} ids known to the client, {len(not_in_gateway)} "
            "not in the gateway's database",
        },
        "no render a simulator made is missing from the gateway": {
            "ok": not missing_upstream and not live_missing,
            "detail": f"{len(made)} renders made by the OpenAI simulator, {len(upstream_ids)} of its ids in the "
            f"gateway, {len(missing_upstream)} missing"
            + (f": {missing_upstream[:3]}" if missing_upstream else "")
            + "; live kinds (made / known): "
            + (", ".join(f"{kind} {there}/{known}" for kind, (there, known) in live_counts.items()) or "none"),
        },
        "no 5xx outside a fault window": {
            "ok": not stray,
            "detail": f"{len(log.server_errors)} 5xx answers to creates, {len(stray)} outside a fault window "
            f"(API down, Postgres restarted or cut, +{FAULT_MARGIN_SECONDS:.0f} s)"
            + (f": {Counter(stray).most_common(3)}" if stray else "")
            + f"; answers by status {dict(log.statuses)}",
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


def pruned_rows(dsn: str) -> dict[str, int]:
    """Rows deleted from the tables the pruner prunes (pg_stat_user_tables): in the soak nothing else deletes there
    (no video is deleted, whose jobs, events and callbacks would go with it)."""
    found = rows(
        dsn, "SELECT relname, n_tup_del FROM pg_stat_user_tables WHERE relname = ANY($1::text[])", list(PRUNED_TABLES)
    )
    return {str(row["relname"]): int(row["n_tup_del"]) for row in found}


@contextlib.contextmanager
def soak_database(result: dict[str, Any]) -> Iterator[tuple[str, PrivatePostgres | None]]:
    """The soak's own Postgres cluster (restarted mid-soak), or, without initdb or with
    BENCH_SOAK_SHARED_POSTGRES=1, a throwaway database on the shared server (no restart there)."""
    if os.environ.get("BENCH_SOAK_SHARED_POSTGRES") == "1":
        result["postgres"] = "shared 127.0.0.1:5432 (BENCH_SOAK_SHARED_POSTGRES=1): no Postgres restart"
    else:
        cluster = contextlib.ExitStack()
        try:
            dsn, server = cluster.enter_context(private_postgres("vg_soak"))
        except (RuntimeError, OSError, subprocess.SubprocessError) as error:
            cluster.close()
            result["postgres"] = f"shared 127.0.0.1:5432: no private cluster ({error}); no Postgres restart"
        else:
            result["postgres"] = f"private cluster on port {server.port} ({server.bin_dir})"
            sys.stderr.write(f"[soak] Postgres: {result['postgres']}\n")
            with cluster:
                yield dsn, server
            return
    sys.stderr.write(f"[soak] Postgres: {result['postgres']}\n")
    with throwaway_database("vg_soak") as dsn:
        yield dsn, None


@contextlib.contextmanager
def second_api(stack: BenchStack) -> Iterator[ApiPool]:
    """A second API process beside the stack's, on its own port; both are killed in turn."""
    port = free_port()
    api = ManagedProcess("api-2", gateway_command("serve", "--port", str(port)), stack.env, stack.logs / "api-2.log")
    url = f"http://127.0.0.1:{port}"
    try:
        api.start()
        api.wait_http(f"{url}/healthz", timeout=60)
        yield ApiPool([stack.api, api], [stack.api_url, url])
    finally:
        api.stop()


def main(*, minutes: float, renders: int, out: str | None) -> int:
    workdir = Path(tempfile.mkdtemp(prefix="vg-soak-"))
    started_at = datetime.now(UTC)
    callback_log = workdir / "callbacks.jsonl"
    callback_port = free_port()
    # At least a cut-off create's settling time plus a stale upload's age, with a janitor pass after them.
    grace = max(180.0, minutes * 60 * 0.25)
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
            soak_database(result) as (dsn, postgres),
            private_seaweedfs(workdir / "seaweedfs") as weed,
            running_stack(
                dsn=dsn,
                s3=weed.settings,
                workdir=workdir,
                workers=WORKERS,
                env=SOAK_ENV,
                worker_env=SOAK_WORKER_ENV,
                live=LIVE_KINDS,
            ) as stack,
            second_api(stack) as apis,
        ):
            stack.sim_faults(webhook_drop_probability=0.2, webhook_duplicate_probability=0.2)
            faults = Faults(stack, weed.restart, minutes=minutes, apis=apis, postgres=postgres)
            faults.start()
            began = time.monotonic()
            sys.stderr.write(f"[soak] {minutes} min, up to {renders} renders; logs in {workdir / 'logs'}\n")
            try:
                log, keys = create_until(
                    stack,
                    apis.urls,
                    deadline=began + minutes * 60,
                    renders=renders,
                    callback_url=f"http://127.0.0.1:{callback_port}/callbacks",
                )
                # Renders asked for all created early: the faults go on while the backlog is worked off.
                while time.monotonic() < began + minutes * 60 and _safe_backlog(stack.dsn) > 0:
                    time.sleep(1)
            finally:
                faults.stop_event.set()
                faults.join(timeout=180)
            # Make sure the full complement of workers and APIs is up for the drain (one may have just been killed).
            while len([w for w in stack.workers if w.alive()]) < WORKERS:
                stack.start_worker()
            for index, api in enumerate(apis.processes):
                if not api.alive():
                    api.stop()
                    api.start()
                api.wait_http(f"{apis.urls[index]}/healthz", timeout=120)
            created = sum(render.outcome == "created" for render in log.renders)
            sys.stderr.write(f"[soak] created {created}; draining (at most {grace:.0f} s)\n")
            drain_seconds = drain(stack, grace=grace)
            resolved = asyncio.run(_resolve(apis.urls, keys, log))
            if resolved:  # a render found only now may still be settling
                drain_seconds += drain(stack, grace=grace / 2)
            sys.stderr.write("[soak] checking invariants\n")
            invariants = check_invariants(stack, callback_log, log, resolved, faults)
            outcomes = Counter(render.outcome for render in log.renders)
            result.update(
                {
                    "renders_asked_of_gateway": len(log.renders),
                    "renders_created": outcomes["created"],
                    "renders_outcome_unknown": outcomes["unknown"],
                    "renders_refused": outcomes["refused"],
                    # Counted by the database: renders whose create was cut off may be there too.
                    "videos_in_db": rows(stack.dsn, "SELECT count(*) FROM videos")[0][0],
                    "pruned_rows": pruned_rows(stack.dsn),
                    "create_batch_errors": sum(status != "200" for status in log.statuses.elements()),
                    "create_answers": dict(log.statuses),
                    "create_retries": log.retries,
                    "unresolved_creates": dict(resolved),
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
    if result.get("pruned_rows") is not None:
        sys.stdout.write(f"rows pruned: {result['pruned_rows']}\n")
    sys.stdout.write(f"faults: {result['faults']}\nresults: {path}\n")
    if out is None:
        sys.stdout.write(f"doc: {report.write_doc()}\n")
    if ok:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        sys.stdout.write(f"logs kept in {workdir / 'logs'}\n")
    return 0 if ok else 1
