"""`video-gateway dev` (what `make run` runs): the whole service on this machine, one demo render, then serve.

First it checks that every port it will listen on is free (the API 8000, the simulator 8100, the Gemini
simulator 8101 with `VG_DEMO_PROVIDER=gemini`, SeaweedFS's ports with S3 on 8333, the callback receiver 8102)
and stops at once, saying which, when one is not: a second `make run` must not talk to the first one's
processes. Then it prepares this checkout's own database (`app.dev.checkout`: `video_gateway_<dir>_<hash>`
unless `VG_DB__URL` is set), starts SeaweedFS (data in this checkout's `.devstack/seaweedfs`), the upstream
simulator (sending signed webhooks to the API), the API (with a dev admin key kept in `.devstack/admin-key`,
so the operator console exists) and an archive worker, migrates, creates the dev caller, writes
`.devstack/cli.env` for the CLI of this checkout, starts a callback receiver that verifies signatures
(`app.dev.receiver`), renders one sample video with that receiver as its `callback_url`, waits until its
assets are in S3 and its signed `video.archived` has arrived, says where everything is, then keeps
everything running until Ctrl-C, which stops all it started.

Every port can be moved (a second stack beside a first, as the end-to-end test runs one): `VG_API__PORT`,
`VG_SIMULATOR__PORT` (the Gemini simulator takes the next one), `VG_DEV__RECEIVER_PORT`, `VG_DEV__S3_PORT` (the
stack's processes get that SeaweedFS as their S3 endpoint) and `VG_DEV__SEAWEEDFS_PORT_BASE` (SeaweedFS's nine
other ports); unset, they are the ports above.

`VG_DEMO_PROVIDER=gemini make run` also starts the Gemini API simulator (port 8101) behind an upstream
profile `veo` of kind `gemini`, and renders the demo with Veo through it: the gateway archives the MP4 and
derives the thumbnail and spritesheet from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import secrets
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import asyncpg
import httpx
from pydantic import SecretStr
from sqlalchemy.engine import make_url

from app import migrate
from app.auth import service as auth_service
from app.core.config import Settings
from app.core.db import Database
from app.core.local_env import CLI_ENV_FILE, DEVSTACK_DIR, write_env_file
from app.dev.checkout import (
    Listener,
    PortInUse,
    check_ports,
    checkout_database_url,
    database_name,
    database_server,
)
from app.dev.processes import STOP_GRACE_SECONDS, ManagedProcess, gateway_command, stop_all
from app.dev.progress import Reporter, Step, make_reporter, say
from app.dev.receiver import CallbackReceiver, ReceivedCallback
from app.dev.seaweedfs import SeaweedPorts, seaweedfs

DEMO_PROMPT = "A paper boat drifting across a calm pond at sunrise"
DEMO_VEO_MODEL = "veo-3.1-fast-generate-preview"
VEO_MODELS = ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-3.1-lite-generate-preview")
# Google keeps generated files two days; the simulator does the same.
GEMINI_RETENTION_SECONDS = 2 * 24 * 3600
ARCHIVED_EVENT = "video.archived"
# The events that end a video's story: the demo waits for the first of them.
FINAL_EVENTS = (ARCHIVED_EVENT, "video.archive_failed", "video.failed")
CALLBACK_WAIT_SECONDS = 60.0
ARCHIVE_WAIT_SECONDS = 120.0


async def ensure_database(url: str) -> None:
    """Create the configured database if the server lacks it (dev convenience; production migrates only)."""
    parsed = make_url(url)
    admin = parsed.set(drivername="postgresql", database="postgres").render_as_string(hide_password=False)
    connection = await asyncpg.connect(admin)
    try:
        exists = await connection.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", parsed.database)
        if not exists:
            await connection.execute(f'CREATE DATABASE "{parsed.database}"')
    finally:
        await connection.close()


async def ensure_dev_caller(settings: Settings) -> None:
    database = Database.connect(settings.db)
    try:
        async with database.transaction() as session:
            await auth_service.ensure_dev_caller(session, key=settings.dev_api_key.get_secret_value())
    finally:
        await database.dispose()


def kept_secret(path: Path, make: Callable[[], str]) -> str:
    """The secret in `path`, made once (owner-only from the start) and kept across runs."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(descriptor, "w", encoding="utf-8") as out:
                out.write(make() + "\n")
    return path.read_text(encoding="utf-8").strip()


def dev_webhook_secret(workdir: Path) -> str:
    """A `whsec_` secret shared by the simulator (signs) and the API (verifies), kept across runs."""
    return kept_secret(
        workdir / "webhook-secret", lambda: "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    )


def dev_admin_key(workdir: Path) -> str:
    """This checkout's operator key (`VG_ADMIN_API_KEY`: the console and `/v1/admin`), kept across runs."""
    return kept_secret(workdir / "admin-key", lambda: "vg-admin-" + secrets.token_urlsafe(24))


def gemini_port(settings: Settings) -> int:
    return settings.simulator.port + 1


def veo_profile(settings: Settings, *, webhook_secret: str) -> dict[str, object]:
    """The `veo` upstream profile, aimed at the Gemini simulator (the real API: https://generativelanguage.googleapis.com)."""
    return {
        "kind": "gemini",
        "base_url": f"http://127.0.0.1:{gemini_port(settings)}",
        "api_key": settings.simulator.api_key.get_secret_value(),
        "models": list(VEO_MODELS),
        "webhook_secrets": webhook_secret,
    }


def gemini_simulator_env(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "VG_SIMULATOR__DATA_DIR": str(Path(".devstack/gemini-simulator").resolve()),
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{settings.api.port}/webhooks/veo",
        "VG_SIMULATOR__TTL_SECONDS": str(GEMINI_RETENTION_SECONDS),
    }


def child_env(settings: Settings, *, webhook_secret: str, admin_key: str) -> dict[str, str]:
    """The environment of the stack's processes, and (with the dev key) what `.devstack/cli.env` holds."""
    upstreams = (
        {"veo": veo_profile(settings, webhook_secret=webhook_secret)} if settings.demo_provider == "gemini" else {}
    )
    return {
        "VG_UPSTREAMS": json.dumps(upstreams),
        "VG_MODE": "dev",
        "VG_DB__URL": settings.db.url.get_secret_value(),
        "VG_UPSTREAM__BASE_URL": f"http://127.0.0.1:{settings.simulator.port}/v1",
        "VG_UPSTREAM__API_KEY": settings.simulator.api_key.get_secret_value(),
        "VG_SIMULATOR__API_KEY": settings.simulator.api_key.get_secret_value(),
        "VG_SIMULATOR__DATA_DIR": str(Path(".devstack/simulator").resolve()),
        "VG_S3__ENDPOINT_URL": settings.s3.endpoint_url or "",
        "VG_S3__BUCKET": settings.s3.bucket,
        "VG_S3__PREFIX": settings.s3.prefix,
        "VG_S3__REGION": settings.s3.region,
        "VG_S3__ACCESS_KEY_ID": settings.s3.access_key_id.get_secret_value(),
        "VG_S3__SECRET_ACCESS_KEY": settings.s3.secret_access_key.get_secret_value(),
        "VG_WEBHOOKS__SECRETS": webhook_secret,
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{settings.api.port}{settings.webhooks.path}",
        "VG_SIMULATOR__WEBHOOK_SECRET": webhook_secret,
        "VG_ADMIN_API_KEY": admin_key,
    }


def cli_env_values(settings: Settings, env: dict[str, str]) -> dict[str, str]:
    """`.devstack/cli.env`: the processes' environment plus the dev caller's key."""
    return {**env, "VG_DEV_API_KEY": settings.dev_api_key.get_secret_value()}


def write_cli_env(path: Path, settings: Settings, env: dict[str, str]) -> None:
    write_env_file(path, cli_env_values(settings, env))


def with_database(settings: Settings, url: str) -> Settings:
    return settings.model_copy(update={"db": settings.db.model_copy(update={"url": SecretStr(url)})})


def with_seaweedfs(settings: Settings, seaweed: SeaweedPorts) -> Settings:
    """The S3 endpoint of the SeaweedFS the stack starts (`VG_DEV__S3_PORT`), whatever `VG_S3__ENDPOINT_URL` says:
    the stack and its processes archive there."""
    endpoint = f"http://127.0.0.1:{seaweed.s3}"
    return settings.model_copy(update={"s3": settings.s3.model_copy(update={"endpoint_url": endpoint})})


def listeners(settings: Settings, seaweed: SeaweedPorts, *, receiver_port: int) -> list[Listener]:
    """Every port the stack will listen on, in the order it starts them."""
    found = [Listener(port, "SeaweedFS") for port in seaweed.all_ports()]
    found.append(Listener(settings.simulator.port, "simulator", settings.simulator.host))
    if settings.demo_provider == "gemini":
        found.append(Listener(gemini_port(settings), "Gemini simulator", settings.simulator.host))
    found.append(Listener(settings.api.port, "API", settings.api.host))
    found.append(Listener(receiver_port, "callback receiver"))
    # Listed first in the message: the API's port is the one a user knows.
    return sorted(found, key=lambda listener: listener.what != "API")


def steps(settings: Settings, *, database: str, seaweed: SeaweedPorts, receiver_port: int) -> list[Step]:
    found = [
        Step("postgres", "Postgres", f"preparing Postgres (database {database}, migrations, dev caller)"),
        Step(
            "s3",
            f"S3 (SeaweedFS :{seaweed.s3})",
            f"starting SeaweedFS (S3 on :{seaweed.s3}, data in {DEVSTACK_DIR}/seaweedfs)",
        ),
        Step(
            "simulator",
            f"simulator :{settings.simulator.port}",
            f"starting the upstream simulator on :{settings.simulator.port}",
        ),
    ]
    if settings.demo_provider == "gemini":
        found.append(
            Step(
                "gemini",
                f"Gemini simulator :{gemini_port(settings)}",
                f"starting the Gemini API simulator on :{gemini_port(settings)} (profile 'veo', kind gemini)",
            )
        )
    found += [
        Step("api", f"API :{settings.api.port}", f"starting the API on :{settings.api.port} (console at /console)"),
        Step("worker", "archive worker", "starting the archive worker"),
        Step("receiver", f"callback receiver :{receiver_port}", f"starting the callback receiver on :{receiver_port}"),
        Step(
            "render",
            "render",
            "creating the demo render (POST /v1/videos, callback_url on the receiver)",
            total=100,
        ),
        Step("archive", "archive to S3", "waiting for the archive worker to copy it to S3"),
        Step("callback", f"callback {ARCHIVED_EVENT}", f"waiting for its signed {ARCHIVED_EVENT} callback"),
    ]
    return found


class StepFailed(RuntimeError):
    """A step could not finish; the message says why (and where to look)."""


class Stages:
    """Which step is running, so a failure marks the right one."""

    def __init__(self, reporter: Reporter) -> None:
        self.reporter = reporter
        self.current: str | None = None

    def begin(self, key: str, label: str | None = None, *, detail: str = "") -> None:
        self.current = key
        self.reporter.begin(key, label, detail=detail)

    def done(self, key: str, detail: str = "") -> None:
        self.reporter.done(key, detail)
        self.current = None

    def fail(self, detail: str) -> None:
        if self.current is not None:
            self.reporter.fail(self.current, detail)
            self.current = None


@dataclass(frozen=True)
class DemoResult:
    video: dict[str, Any]
    archive: dict[str, Any]
    copy: Path
    callback: ReceivedCallback


def callback_secret(settings: Settings) -> str:
    """The dev caller's callback signing secret, as any caller reads it: `GET /v1/callbacks/secret`."""
    response = httpx.get(
        f"http://127.0.0.1:{settings.api.port}/v1/callbacks/secret",
        headers={"authorization": f"Bearer {settings.dev_api_key.get_secret_value()}"},
        timeout=10,
    )
    response.raise_for_status()
    secret: str = response.json()["secret"]
    return secret


def render_demo(settings: Settings, workdir: Path, stages: Stages, receiver: CallbackReceiver) -> DemoResult:
    api = f"http://127.0.0.1:{settings.api.port}/v1"
    headers = {"authorization": f"Bearer {settings.dev_api_key.get_secret_value()}"}
    fields = {"prompt": (None, DEMO_PROMPT), "seconds": (None, "4"), "callback_url": (None, receiver.url)}
    if settings.demo_provider == "gemini":
        fields |= {"model": (None, DEMO_VEO_MODEL), "size": (None, "1280x720")}
    reporter = stages.reporter
    with httpx.Client(base_url=api, headers=headers, timeout=60) as client:
        stages.begin("render")
        created = client.post("/videos", files=fields)
        created.raise_for_status()
        video = created.json()
        reporter.relabel(
            "render",
            f"rendering {video['id']} with {video['model']} ({video['size']}, {video['seconds']} s): {DEMO_PROMPT!r}",
            title=f"render {video['id']}",
        )
        while video["status"] not in ("completed", "failed"):
            time.sleep(0.5)
            video = client.get(f"/videos/{video['id']}").json()
            reporter.update("render", completed=video["progress"], detail=f"{video['status']} {video['progress']}%")
        if video["status"] == "failed":
            raise StepFailed(f"the demo render failed: {video['error']}")
        stages.done("render")

        stages.begin("archive")
        deadline = time.monotonic() + ARCHIVE_WAIT_SECONDS
        while time.monotonic() < deadline:
            archive: dict[str, Any] = client.get(f"/videos/{video['id']}").json().get("archive") or {}
            archived = [variant for variant, asset in archive.items() if asset.get("state") == "archived"]
            if archive:
                reporter.update(
                    "archive",
                    completed=len(archived),
                    total=len(archive),
                    detail=f"{len(archived)}/{len(archive)} variants archived",
                )
            # Every variant: with a live provider the thumbnail and spritesheet are made from the MP4.
            if archive and len(archived) == len(archive):
                break
            time.sleep(0.5)
        else:
            raise StepFailed(
                f"the demo video was not archived within {ARCHIVE_WAIT_SECONDS:.0f} s; see "
                f"{DEVSTACK_DIR}/logs/worker.log"
            )
        copy = workdir / f"{video['id']}.mp4"
        with client.stream("GET", f"/videos/{video['id']}/content") as response, copy.open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                out.write(chunk)
        stages.done("archive")

        stages.begin(
            "callback", f"waiting for its signed {ARCHIVED_EVENT} callback at {receiver.url}", detail=receiver.url
        )
        callback = receiver.wait_for(video["id"], FINAL_EVENTS, timeout=CALLBACK_WAIT_SECONDS)
        if callback is None:
            raise StepFailed(
                f"no signed callback for {video['id']} reached {receiver.url} within {CALLBACK_WAIT_SECONDS:.0f} s; "
                f"see {DEVSTACK_DIR}/logs/worker.log and GET /v1/callbacks/deliveries?video_id={video['id']}"
            )
        if callback.type != ARCHIVED_EVENT:
            raise StepFailed(f"the demo video's callback was {callback.type}, not {ARCHIVED_EVENT}")
        stages.done("callback")
    return DemoResult(video=video, archive=archive, copy=copy, callback=callback)


def summary(
    settings: Settings,
    demo: DemoResult,
    *,
    receiver: CallbackReceiver,
    workdir: Path,
    admin_key: str,
    database_explicit: bool,
) -> list[str]:
    """The lines `make run` ends with: where the demo video is, and how to use everything it started."""
    api = f"http://127.0.0.1:{settings.api.port}/v1"
    video, archive = demo.video, demo.archive
    key = f"{settings.s3.prefix}/{video['id']}/video.mp4"
    url = settings.db.url.get_secret_value()
    whose = "set by VG_DB__URL" if database_explicit else "this checkout's own; VG_DB__URL overrides"
    lines = [
        f"done: {video['id']} completed and archived ({archive['video']['bytes']} bytes, "
        f"sha256 {archive['video']['sha256']})",
        f"  archived MP4: s3://{settings.s3.bucket}/{key}  (endpoint {settings.s3.endpoint_url}, "
        f"data in {workdir / 'seaweedfs'})",
    ]
    for variant in ("thumbnail", "spritesheet"):
        if asset := archive.get(variant):
            lines.append(f"  {variant}: {asset['bytes']} bytes, sha256 {asset['sha256']}")
    lines += [
        f"  fetch it:  curl -H 'Authorization: Bearer {settings.dev_api_key.get_secret_value()}' "
        f"{api}/videos/{video['id']}/content -o video.mp4",
        f"  saved a copy at {demo.copy.resolve()}",
        f"  callback {demo.callback.type} for {video['id']} arrived at {receiver.url}, signature verified with "
        "standardwebhooks: Webhook(secret).verify(body, headers)",
        f"  callback receiver: {receiver.url} keeps running; pass it as callback_url and each signed event shows "
        f"here and in {workdir / 'logs' / 'callbacks.log'}",
        f"  console: http://127.0.0.1:{settings.api.port}/console  (sign in with the admin key {admin_key}, "
        f"kept in {workdir / 'admin-key'})",
        f"  database: {database_name(url)} on {database_server(url)} ({whose})",
        f"  CLI: {workdir / CLI_ENV_FILE} holds this stack's settings, so `.venv/bin/video-gateway status` "
        "works in this checkout with nothing exported",
    ]
    return lines


def run_dev_stack(settings: Settings) -> None:
    checkout = Path.cwd()
    workdir = (checkout / DEVSTACK_DIR).resolve()
    logs = workdir / "logs"
    cli_env = workdir / CLI_ENV_FILE
    seaweed_ports = SeaweedPorts.dev(settings.dev)
    receiver_port = settings.dev.receiver_port

    url, database_explicit = checkout_database_url(settings.db.url.get_secret_value(), checkout)
    settings = with_seaweedfs(with_database(settings, url), seaweed_ports)
    try:
        check_ports(listeners(settings, seaweed_ports, receiver_port=receiver_port))
    except PortInUse as busy:
        sys.stderr.write(f"{busy}\n")
        sys.stderr.flush()
        raise SystemExit(1) from None

    workdir.mkdir(exist_ok=True)
    processes: list[ManagedProcess] = []
    receiver: CallbackReceiver | None = None
    database = database_name(url)
    reporter = make_reporter(steps(settings, database=database, seaweed=seaweed_ports, receiver_port=receiver_port))
    stages = Stages(reporter)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    def on_callback(received: ReceivedCallback) -> None:
        reporter.note(
            f"callback {received.type} for {received.video_id or '(no video)'} arrived "
            f"(webhook-id {received.webhook_id}): signature verified"
        )

    signal.signal(signal.SIGTERM, on_signal)
    # Ctrl-C stops the stack even when it was started with SIGINT ignored (a shell's background job, `nohup ... &`):
    # Python keeps an inherited SIG_IGN instead of raising KeyboardInterrupt, and the stack would never stop.
    signal.signal(signal.SIGINT, on_signal)
    try:
        stages.begin("postgres", detail=database)
        try:
            asyncio.run(ensure_database(url))
        except (OSError, asyncpg.PostgresError) as exc:
            raise StepFailed(
                f"Postgres is not reachable at {database_server(url)} ({exc}); make run needs it there "
                "(trust auth, user postgres), or VG_DB__URL"
            ) from None
        migrate.upgrade(url)
        asyncio.run(ensure_dev_caller(settings))
        whose = "from VG_DB__URL" if database_explicit else "this checkout's own"
        stages.done("postgres", f"database {database} ({whose})")

        stages.begin("s3")
        s3 = seaweedfs(
            settings.s3, data_dir=workdir / "seaweedfs", log_path=logs / "seaweedfs.log", ports=seaweed_ports
        ).start()
        processes.append(s3)
        s3.wait_http(f"{settings.s3.endpoint_url}/", timeout=60)
        stages.done("s3")

        admin_key = dev_admin_key(workdir)
        env = child_env(settings, webhook_secret=dev_webhook_secret(workdir), admin_key=admin_key)
        stages.begin("simulator")
        simulator = ManagedProcess(
            "simulator",
            gateway_command("simulator", "--port", str(settings.simulator.port)),
            env,
            logs / "simulator.log",
        ).start()
        processes.append(simulator)
        simulator.wait_http(f"http://127.0.0.1:{settings.simulator.port}/v1/videos")
        stages.done("simulator")
        if settings.demo_provider == "gemini":
            stages.begin("gemini")
            gemini = ManagedProcess(
                "gemini-simulator",
                gateway_command("simulator", "--kind", "gemini", "--port", str(gemini_port(settings))),
                gemini_simulator_env(settings, env),
                logs / "gemini-simulator.log",
            ).start()
            processes.append(gemini)
            gemini.wait_http(f"http://127.0.0.1:{gemini_port(settings)}/v1beta/models")
            stages.done("gemini")

        stages.begin("api")
        api = ManagedProcess(
            "api", gateway_command("serve", "--port", str(settings.api.port)), env, logs / "api.log"
        ).start()
        processes.append(api)
        api.wait_http(f"http://127.0.0.1:{settings.api.port}/healthz")
        stages.done("api")

        stages.begin("worker")
        worker = ManagedProcess("worker", gateway_command("worker"), env, logs / "worker.log").start()
        processes.append(worker)
        stages.done("worker")
        write_cli_env(cli_env, settings, env)
        reporter.note(f"wrote {cli_env} (this stack's settings for the CLI of this checkout)")

        stages.begin("receiver")
        receiver = CallbackReceiver(
            callback_secret(settings),
            log_path=logs / "callbacks.log",
            port=receiver_port,
            on_event=on_callback,
            refresh_secret=lambda: callback_secret(settings),
        ).start()
        stages.done("receiver")

        demo = render_demo(settings, workdir, stages, receiver)
        reporter.close()
        for line in summary(
            settings,
            demo,
            receiver=receiver,
            workdir=workdir,
            admin_key=admin_key,
            database_explicit=database_explicit,
        ):
            say(line)
        say(
            f"serving: API http://127.0.0.1:{settings.api.port}/v1 (key {settings.dev_api_key.get_secret_value()!r}),"
            f" logs in {logs}. Ctrl-C stops everything."
        )
        while all(process.alive() for process in processes):
            time.sleep(1)
        dead = [process for process in processes if not process.alive()]
        for process in dead:
            say(f"{process.name} exited; its log ends with:\n{process.log_tail()}")
        raise SystemExit(1)
    except KeyboardInterrupt:
        stages.fail("interrupted")
        reporter.close()
        say("stopping")
    except (RuntimeError, httpx.HTTPError) as exc:
        stages.fail(str(exc).split("\n", 1)[0])
        reporter.close()
        say(f"failed: {exc}")
        raise SystemExit(1) from None
    finally:
        reporter.close()
        if receiver is not None:
            with contextlib.suppress(Exception):
                receiver.stop()
        for process in stop_all(processes):
            say(
                f"{process.name} did not stop within {STOP_GRACE_SECONDS:.0f} s of SIGTERM and was killed; its log "
                f"ends with:\n{process.log_tail(10)}"
            )
