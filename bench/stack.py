"""The pieces a benchmark runs against, all on this machine and all its own.

A `BenchStack` is a throwaway Postgres database (created, migrated, dropped), a private SeaweedFS on free
ports, the upstream simulator, the API and any number of workers, started with the same supervisor code as
`make run` and the e2e tests (`app.dev.processes`). With `gemini=True` the Gemini API simulator (Veo) runs
beside the OpenAI one, behind an upstream profile `veo` of kind `gemini` (`VEO_MODEL` renders there); with
`live=("seedance", "fal", "replicate")` those providers' simulators run too, each behind a profile named
after its kind (`LIVE_RENDERS` says which model, seconds and size render there).
Everything is stopped, and the database dropped, on the way out, also on Ctrl-C or a failure: each child
runs in its own process group.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr

from app import migrate
from app.archive.storage import make_client
from app.auth import service as auth_service
from app.core.config import DatabaseSettings, S3Settings
from app.core.db import Database
from app.dev.processes import ManagedProcess, free_port, gateway_command
from app.dev.seaweedfs import SeaweedPorts, seaweedfs

ADMIN_DSN = "postgresql://postgres@127.0.0.1:5432/postgres"
SIMULATOR_KEY = "bench-sim-key"
MiB = 1024 * 1024
# The Gemini simulator's stack: the profile's name (its webhooks arrive at /webhooks/veo), the model routed
# to it, and Google's retention of generated files (2 days), which the simulator is told to keep too.
VEO_PROFILE = "veo"
VEO_MODEL = "veo-3.1-fast-generate-preview"
GEMINI_RETENTION_SECONDS = 2 * 24 * 3600


@dataclass(frozen=True)
class LiveRender:
    """What a live kind's profile renders in the benchmarks: its simulator's API prefix, the model, a
    `seconds` and `size` the model takes, and how its simulator wants the key."""

    api_prefix: str
    model: str
    seconds: str
    size: str
    auth_scheme: str = "Bearer"


LIVE_RENDERS: dict[str, LiveRender] = {
    "seedance": LiveRender("/api/v3", "seedance-1-0-pro-250528", "2", "864x480"),
    "fal": LiveRender("", "fal-ai/wan/v2.2-a14b/text-to-video", "5", "832x480", auth_scheme="Key"),
    "replicate": LiveRender("", "wan-video/wan-2.2-t2v-fast", "5", "832x480"),
}


def new_webhook_secret() -> str:
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(ADMIN_DSN)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextlib.contextmanager
def throwaway_database(prefix: str = "vg_bench") -> Iterator[str]:
    """A migrated database of its own; yields its asyncpg DSN and drops it afterwards."""
    name = f"{prefix}_{secrets.token_hex(5)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    dsn = ADMIN_DSN.rsplit("/", 1)[0] + "/" + name
    try:
        migrate.upgrade(sqlalchemy_url(dsn))
        yield dsn
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def sqlalchemy_url(dsn: str) -> str:
    return dsn.replace("postgresql://", "postgresql+asyncpg://", 1)


def postgres_bin_dir() -> Path | None:
    """The newest installed PostgreSQL's bin directory holding `initdb` and `pg_ctl`, or None."""

    def version(initdb: Path) -> int:
        name = initdb.parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=version)
    if found:
        return found[-1].parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb and (Path(initdb).parent / "pg_ctl").exists() else None


@dataclass
class PrivatePostgres:
    """A Postgres cluster of its own (initdb, trust auth, fsync off) on a free port, in a temp directory.

    Run as the `postgres` user when this process is root (initdb refuses root). `restart()` is a real
    `pg_ctl restart -m fast`: every connection is cut and the server is away for a moment.
    """

    bin_dir: Path
    directory: Path
    port: int
    as_user: list[str]

    @property
    def data(self) -> Path:
        return self.directory / "data"

    @property
    def admin_dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 120) -> None:
        # Into a file, not a pipe: the server that `pg_ctl start|restart` leaves running inherits it.
        with (self.directory / "pg_ctl.log").open("ab") as log:
            code = subprocess.run(
                [*self.as_user, *args], stdout=log, stderr=subprocess.STDOUT, timeout=timeout, start_new_session=True
            ).returncode
        if code != 0:
            raise RuntimeError(f"{Path(args[0]).name} {args[-1]} failed ({code}):\n{self.log_tail()}")

    def log_tail(self) -> str:
        try:
            lines = []
            for name in ("pg_ctl.log", "postgres.log"):
                lines += (self.directory / name).read_text(errors="replace").splitlines()[-10:]
            return "\n".join(lines)
        except OSError:
            return ""

    def init(self) -> None:
        self._run(
            str(self.bin_dir / "initdb"),
            "-D",
            str(self.data),
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        )

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off "
            "-c synchronous_commit=off -c full_page_writes=off -c max_connections=300"
        )
        self._run(
            str(self.bin_dir / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.directory / "postgres.log"),
            "-o",
            options,
            "-w",
            "-t",
            "60",
            "start",
        )

    def restart(self) -> None:
        log = str(self.directory / "postgres.log")
        self._run(
            str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-l", log, "-m", "fast", "-w", "-t", "60", "restart"
        )

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-m", "immediate", "-w", "stop", timeout=60)
        shutil.rmtree(self.directory, ignore_errors=True)


@contextlib.contextmanager
def private_postgres(prefix: str = "vg_bench") -> Iterator[tuple[str, PrivatePostgres]]:
    """A private cluster with one migrated database; yields (its asyncpg DSN, the cluster). The cluster is
    stopped and its directory removed on the way out, also on Ctrl-C or a failure. Raises RuntimeError when
    no `initdb` is installed."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        raise RuntimeError("no initdb/pg_ctl found (looked in /usr/lib/postgresql/*/bin and PATH)")
    directory = Path(tempfile.mkdtemp(prefix="vg-pg-"))
    as_user: list[str] = []
    if os.geteuid() == 0:
        import pwd

        user = pwd.getpwnam("postgres")
        os.chown(directory, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    server = PrivatePostgres(bin_dir, directory, free_port(), as_user)
    try:
        server.init()
        server.start()
        name = f"{prefix}_{secrets.token_hex(5)}"

        async def create() -> None:
            connection = await asyncpg.connect(server.admin_dsn)
            try:
                await connection.execute(f'CREATE DATABASE "{name}"')
            finally:
                await connection.close()

        asyncio.run(create())
        dsn = server.admin_dsn.rsplit("/", 1)[0] + "/" + name
        migrate.upgrade(sqlalchemy_url(dsn))
        yield dsn, server
    finally:
        server.stop()


@dataclass
class Seaweed:
    process: ManagedProcess
    settings: S3Settings
    ports: SeaweedPorts
    directory: Path

    def start(self) -> None:
        self.process.start()
        self.process.wait_http(f"{self.settings.endpoint_url}/", timeout=60)
        deadline = time.monotonic() + 60
        client = make_client(self.settings)
        try:
            # The S3 port answers before weed mini has created the bucket.
            while True:
                try:
                    client.head_bucket(Bucket=self.settings.bucket)
                    return
                except Exception as error:
                    if time.monotonic() > deadline or not self.process.alive():
                        raise RuntimeError(f"SeaweedFS not ready: {error}\n{self.process.log_tail()}") from error
                    time.sleep(0.2)
        finally:
            client.close()

    def restart(self) -> None:
        """Stop and start again on the same ports and data (the soak's "S3 restarted once")."""
        self.process.stop(grace=10)
        self.process = seaweedfs(
            self.settings, data_dir=self.directory / "data", log_path=self.directory / "seaweedfs.log", ports=self.ports
        )
        self.start()

    def stop(self) -> None:
        self.process.stop(grace=5)
        # weed leaves its unix sockets in /tmp, named after the ports.
        for port in (self.ports.s3, self.ports.master, self.ports.volume, self.ports.filer, self.ports.admin):
            for leftover in Path("/tmp").glob(  # noqa: S108  (where weed puts them, whatever TMPDIR says)
                f"seaweedfs-*-{port}.sock"
            ):
                leftover.unlink(missing_ok=True)
        shutil.rmtree(self.directory / "data", ignore_errors=True)


@contextlib.contextmanager
def private_seaweedfs(directory: Path) -> Iterator[Seaweed]:
    ports = SeaweedPorts.free()
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{ports.s3}",
        bucket=f"vg-bench-{secrets.token_hex(4)}",
        access_key_id=SecretStr(f"bench-{secrets.token_hex(6)}"),
        secret_access_key=SecretStr(secrets.token_hex(16)),
        prefix="videos",
    )
    process = seaweedfs(settings, data_dir=directory / "data", log_path=directory / "seaweedfs.log", ports=ports)
    server = Seaweed(process, settings, ports, directory)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@dataclass
class BenchStack:
    """A running gateway: simulator, API and workers against one database and one S3 bucket."""

    dsn: str
    s3: S3Settings
    env: dict[str, str]
    logs: Path
    api_url: str
    simulator_url: str
    webhook_secret: str
    api: ManagedProcess
    simulator: ManagedProcess
    workers: list[ManagedProcess] = field(default_factory=list)
    # Set with `gemini=True`: the Gemini simulator, its URL and the `veo` profile's webhook secret.
    gemini: ManagedProcess | None = None
    gemini_url: str | None = None
    gemini_webhook_secret: str | None = None
    # Extra environment of every worker started (e.g. a log level), over `env`.
    worker_env: dict[str, str] = field(default_factory=dict)
    # Set with `live=...`: each live kind's simulator URL (its profile is named after the kind).
    live_urls: dict[str, str] = field(default_factory=dict)
    _worker_count: int = 0

    def start_worker(self, **env: str) -> ManagedProcess:
        self._worker_count += 1
        name = f"worker-{self._worker_count}"
        worker = ManagedProcess(
            name, gateway_command("worker"), {**self.env, **self.worker_env, **env}, self.logs / f"{name}.log"
        )
        self.workers.append(worker.start())
        return worker

    def stop_worker(self, worker: ManagedProcess) -> None:
        worker.stop(grace=30)
        self.workers.remove(worker)

    def new_caller_key(self) -> str:
        async def create() -> str:
            database = Database.connect(DatabaseSettings(url=SecretStr(sqlalchemy_url(self.dsn))))
            try:
                async with database.sessionmaker.begin() as session:
                    issued = await auth_service.create_caller(session, name=f"bench-{uuid.uuid4().hex[:10]}")
                    return issued.key
            finally:
                await database.dispose()

        return asyncio.run(create())

    def sim(self) -> httpx.Client:
        return httpx.Client(
            base_url=self.simulator_url, headers={"authorization": f"Bearer {SIMULATOR_KEY}"}, timeout=120
        )

    def sim_faults(self, **knobs: Any) -> None:
        with self.sim() as client:
            client.patch("/_sim/faults", json=knobs).raise_for_status()

    def sim_config(self, **knobs: Any) -> None:
        with self.sim() as client:
            client.patch("/_sim/config", json=knobs).raise_for_status()

    def deliveries(self) -> list[dict[str, Any]]:
        with self.sim() as client:
            data: list[dict[str, Any]] = client.get("/_sim/webhooks").raise_for_status().json()["data"]
            return data

    def live_sim(self, kind: str) -> httpx.Client:
        """A client of one live kind's simulator (its provider routes and `/_sim`), with the key its way."""
        render = LIVE_RENDERS[kind]
        return httpx.Client(
            base_url=self.live_urls[kind],
            headers={"authorization": f"{render.auth_scheme} {SIMULATOR_KEY}"},
            timeout=120,
        )

    def live_file_url(self, kind: str, upstream_id: str) -> str | None:
        """Where the live kind's simulator serves the MP4 of a render, read from its own API as the provider
        documents it (the task's `content.video_url`, the prediction's `output`, the request's `video.url`)."""
        prefix = LIVE_RENDERS[kind].api_prefix
        with self.live_sim(kind) as client:
            if kind == "seedance":
                task = client.get(f"{prefix}/contents/generations/tasks/{upstream_id}").json()
                url = (task.get("content") or {}).get("video_url")
            elif kind == "replicate":
                output = client.get(f"/v1/predictions/{upstream_id}").json().get("output")
                url = output[0] if isinstance(output, list) and output else output
            else:
                app, _, request_id = upstream_id.rpartition(":")
                url = (client.get(f"/{app}/requests/{request_id}").json().get("video") or {}).get("url")
        return url if isinstance(url, str) else None

    def gemini_sim(self) -> httpx.Client:
        """A client of the Gemini simulator (its `/_sim` admin API and its `/v1beta` routes), with the key."""
        if self.gemini_url is None:
            raise RuntimeError("this stack runs no Gemini simulator (gemini=True)")
        return httpx.Client(base_url=self.gemini_url, headers={"x-goog-api-key": SIMULATOR_KEY}, timeout=120)

    def gemini_config(self, **knobs: Any) -> None:
        with self.gemini_sim() as client:
            client.patch("/_sim/config", json=knobs).raise_for_status()

    def gemini_deliveries(self) -> list[dict[str, Any]]:
        """The Gemini simulator's webhook log; each delivery carries its `operation_name` beside the event."""
        with self.gemini_sim() as client:
            data: list[dict[str, Any]] = client.get("/_sim/webhooks").raise_for_status().json()["data"]
            return data


def stack_env(
    *, dsn: str, s3: S3Settings, simulator_port: int, api_port: int, data_dir: Path, webhook_secret: str
) -> dict[str, str]:
    return {
        "VG_MODE": "dev",
        "VG_LOG_LEVEL": "WARNING",
        "VG_LOG_FORMAT": "json",
        "VG_DB__URL": sqlalchemy_url(dsn),
        "VG_UPSTREAM__BASE_URL": f"http://127.0.0.1:{simulator_port}/v1",
        "VG_UPSTREAM__API_KEY": SIMULATOR_KEY,
        "VG_WEBHOOKS__SECRETS": webhook_secret,
        "VG_S3__ENDPOINT_URL": s3.endpoint_url or "",
        "VG_S3__BUCKET": s3.bucket,
        "VG_S3__PREFIX": s3.prefix,
        "VG_S3__ACCESS_KEY_ID": s3.access_key_id.get_secret_value(),
        "VG_S3__SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        # Benchmarks push thousands of renders through a few callers; the default limits would refuse them.
        "VG_LIMITS__MAX_CONCURRENT_RENDERS": "100000",
        "VG_LIMITS__REQUESTS_PER_MINUTE": "10000000",
        "VG_LIMITS__BUDGET_USD_PER_PERIOD": "10000000",
        "VG_WORKER__POLL_INTERVAL_SECONDS": "0.1",
        "VG_WORKER__METRICS_PORT": "0",
        "VG_CALLBACKS__ALLOWED_DESTINATIONS": '["127.0.0.1/32"]',
        "VG_SIMULATOR__API_KEY": SIMULATOR_KEY,
        "VG_SIMULATOR__QUEUE_SECONDS": "0.2",
        "VG_SIMULATOR__RENDER_SECONDS": "0.5",
        "VG_SIMULATOR__FPS": "1",
        "VG_SIMULATOR__DATA_DIR": str(data_dir),
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{api_port}/webhooks/openai",
        "VG_SIMULATOR__WEBHOOK_SECRET": webhook_secret,
        "VG_SIMULATOR__WEBHOOK_RETRY_BASE_SECONDS": "0.5",
        "VG_SIMULATOR__MAX_PARALLEL_RENDERS": "2",
    }


def veo_upstreams(*, gemini_port: int, webhook_secret: str) -> str:
    """`VG_UPSTREAMS` of the gateway: the `veo` profile, kind `gemini`, aimed at the Gemini simulator."""
    profile = {
        "kind": "gemini",
        "base_url": f"http://127.0.0.1:{gemini_port}",
        "api_key": SIMULATOR_KEY,
        "models": [VEO_MODEL],
        "webhook_secrets": webhook_secret,
    }
    return json.dumps({VEO_PROFILE: profile})


def live_upstreams(ports: dict[str, int], *, api_port: int, webhook_secret: str) -> dict[str, dict[str, Any]]:
    """The profiles of the live kinds, one per kind and named after it, each aimed at its simulator."""
    profiles: dict[str, dict[str, Any]] = {}
    for kind, port in ports.items():
        render = LIVE_RENDERS[kind]
        profile: dict[str, Any] = {
            "kind": kind,
            "base_url": f"http://127.0.0.1:{port}{render.api_prefix}",
            "api_key": SIMULATOR_KEY,
            "models": [render.model],
            "webhook_url": f"http://127.0.0.1:{api_port}/webhooks/{kind}",
            # The simulators serve their files from their own address (the providers' CDNs in production).
            "content_redirect_hosts": ["127.0.0.1"],
        }
        if kind == "replicate":
            profile["webhook_secrets"] = webhook_secret
        if kind == "fal":
            profile["webhook_jwks_url"] = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        profiles[kind] = profile
    return profiles


def gemini_simulator_env(
    env: dict[str, str], *, api_port: int, data_dir: Path, webhook_secret: str, overrides: dict[str, str] | None
) -> dict[str, str]:
    """The Gemini simulator's environment: the stack's, with its own webhook target, secret, data and retention.

    It reads the same `VG_SIMULATOR__*` settings as the OpenAI simulator; an OpenAI benchmark's synthetic
    assets are left out (Veo's MP4 must decode: the gateway derives the images from it), `overrides` win.
    """
    own = {name: value for name, value in env.items() if name != "VG_SIMULATOR__SYNTHETIC_ASSET_BYTES"}
    return {
        **own,
        "VG_SIMULATOR__DATA_DIR": str(data_dir),
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{api_port}/webhooks/{VEO_PROFILE}",
        "VG_SIMULATOR__WEBHOOK_SECRET": webhook_secret,
        "VG_SIMULATOR__TTL_SECONDS": str(GEMINI_RETENTION_SECONDS),
        **(overrides or {}),
    }


@contextlib.contextmanager
def running_stack(
    *,
    dsn: str,
    s3: S3Settings,
    workdir: Path,
    workers: int = 0,
    env: dict[str, str] | None = None,
    gemini: bool = False,
    gemini_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
    live: tuple[str, ...] = (),
) -> Iterator[BenchStack]:
    """Simulator + API (+ `workers`) on free ports; stops all of them on the way out.

    `gemini=True` also runs the Gemini simulator (`video-gateway simulator --kind gemini`), with `gemini_env`
    over its environment, and gives the gateway the `veo` profile aimed at it; `live` runs those kinds'
    simulators, each behind a profile named after its kind.
    """
    simulator_port, api_port = free_port(), free_port()
    secret = new_webhook_secret()
    logs = workdir / "logs"
    full_env = {
        **stack_env(
            dsn=dsn,
            s3=s3,
            simulator_port=simulator_port,
            api_port=api_port,
            data_dir=workdir / "sim-data",
            webhook_secret=secret,
        ),
        **(env or {}),
    }
    gemini_process: ManagedProcess | None = None
    gemini_port = free_port() if gemini else None
    veo_secret = new_webhook_secret() if gemini else None
    if gemini_port is not None and veo_secret is not None:
        full_env["VG_UPSTREAMS"] = veo_upstreams(gemini_port=gemini_port, webhook_secret=veo_secret)
        gemini_process = ManagedProcess(
            "gemini-simulator",
            gateway_command("simulator", "--kind", "gemini", "--port", str(gemini_port)),
            gemini_simulator_env(
                full_env,
                api_port=api_port,
                data_dir=workdir / "gemini-sim-data",
                webhook_secret=veo_secret,
                overrides=gemini_env,
            ),
            logs / "gemini-simulator.log",
        )
    live_ports = {kind: free_port() for kind in live}
    if live_ports:
        upstreams = json.loads(full_env.get("VG_UPSTREAMS", "{}"))
        upstreams.update(live_upstreams(live_ports, api_port=api_port, webhook_secret=secret))
        full_env["VG_UPSTREAMS"] = json.dumps(upstreams)
    # Real MP4s (the gateway derives the images from them), each webhook to the create's own URL.
    live_env = {name: value for name, value in full_env.items() if name != "VG_SIMULATOR__SYNTHETIC_ASSET_BYTES"}
    live_processes = [
        ManagedProcess(
            f"{kind}-simulator",
            gateway_command("simulator", "--kind", kind, "--port", str(port)),
            {**live_env, "VG_SIMULATOR__DATA_DIR": str(workdir / f"{kind}-sim-data"), "VG_SIMULATOR__WEBHOOK_URL": ""},
            logs / f"{kind}-simulator.log",
        )
        for kind, port in live_ports.items()
    ]
    simulator = ManagedProcess(
        "simulator", gateway_command("simulator", "--port", str(simulator_port)), full_env, logs / "simulator.log"
    )
    api = ManagedProcess("api", gateway_command("serve", "--port", str(api_port)), full_env, logs / "api.log")
    stack = BenchStack(
        dsn=dsn,
        s3=s3,
        env=full_env,
        logs=logs,
        api_url=f"http://127.0.0.1:{api_port}",
        simulator_url=f"http://127.0.0.1:{simulator_port}",
        webhook_secret=secret,
        api=api,
        simulator=simulator,
        gemini=gemini_process,
        gemini_url=f"http://127.0.0.1:{gemini_port}" if gemini_port is not None else None,
        gemini_webhook_secret=veo_secret,
        worker_env=dict(worker_env or {}),
        live_urls={kind: f"http://127.0.0.1:{port}" for kind, port in live_ports.items()},
    )
    try:
        simulator.start()
        if gemini_process is not None:
            gemini_process.start()
        for process in live_processes:
            process.start()
        api.start()
        simulator.wait_http(f"{stack.simulator_url}/v1/videos", timeout=60)
        if gemini_process is not None:
            # Any answer below 500 will do: without the key the admin API says 401.
            gemini_process.wait_http(f"{stack.gemini_url}/_sim/stats", timeout=60)
        for process, url in zip(live_processes, stack.live_urls.values(), strict=True):
            process.wait_http(f"{url}/_sim/stats", timeout=60)
        api.wait_http(f"{stack.api_url}/healthz", timeout=60)
        for _ in range(workers):
            stack.start_worker()
        yield stack
    finally:
        for worker in list(stack.workers):
            worker.stop(grace=10)
        api.stop()
        simulator.stop()
        if gemini_process is not None:
            gemini_process.stop()
        for process in live_processes:
            process.stop()


@contextlib.contextmanager
def full_stack(
    workdir: Path,
    *,
    workers: int = 0,
    env: dict[str, str] | None = None,
    gemini: bool = False,
    gemini_env: dict[str, str] | None = None,
    worker_env: dict[str, str] | None = None,
) -> Iterator[BenchStack]:
    """Database + SeaweedFS + gateway, all private to this benchmark (`gemini=True`: and the Gemini simulator)."""
    workdir.mkdir(parents=True, exist_ok=True)
    with (
        throwaway_database() as dsn,
        private_seaweedfs(workdir / "seaweedfs") as weed,
        running_stack(
            dsn=dsn,
            s3=weed.settings,
            workdir=workdir,
            workers=workers,
            env=env,
            gemini=gemini,
            gemini_env=gemini_env,
            worker_env=worker_env,
        ) as stack,
    ):
        yield stack


def vm_hwm_mib(pid: int) -> float:
    """Peak resident set size of a live process (`VmHWM` of /proc/<pid>/status), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for pid {pid}")


async def db_fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(dsn)
    try:
        return list(await connection.fetch(sql, *args))
    finally:
        await connection.close()


def rows(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    return asyncio.run(db_fetch(dsn, sql, *args))
