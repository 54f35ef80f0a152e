"""`video-gateway dev` (what `make run` runs): the whole service on this machine, one demo render, then serve.

Starts SeaweedFS, the upstream simulator (port 8100, sending signed webhooks to the API), the API (port
8000) and an archive worker against the local Postgres, migrates, creates the dev caller, renders one
sample video end to end, waits until its assets are in S3 and says where, then keeps everything running
until Ctrl-C, which stops all it started.

`VG_DEMO_PROVIDER=gemini make run` also starts the Gemini API simulator (port 8101) behind an upstream
profile `veo` of kind `gemini`, and renders the demo with Veo through it: the gateway archives the MP4 and
derives the thumbnail and spritesheet from it.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import secrets
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import asyncpg
import httpx
from sqlalchemy.engine import make_url

from app import migrate
from app.auth import service as auth_service
from app.core.config import Settings
from app.core.db import Database
from app.dev.processes import ManagedProcess, gateway_command
from app.dev.seaweedfs import seaweedfs

DEMO_PROMPT = "A paper boat drifting across a calm pond at sunrise"
DEMO_VEO_MODEL = "veo-3.1-fast-generate-preview"
VEO_MODELS = ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview", "veo-3.1-lite-generate-preview")
# Google keeps generated files two days; the simulator does the same.
GEMINI_RETENTION_SECONDS = 2 * 24 * 3600


def say(message: str) -> None:
    sys.stdout.write(f"[make run] {message}\n")
    sys.stdout.flush()


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
        async with database.sessionmaker.begin() as session:
            await auth_service.ensure_dev_caller(session, key=settings.dev_api_key.get_secret_value())
    finally:
        await database.dispose()


def dev_webhook_secret(workdir: Path) -> str:
    """A `whsec_` secret shared by the simulator (signs) and the API (verifies), kept across runs."""
    path = workdir / "webhook-secret"
    if not path.exists():
        path.write_text("whsec_" + base64.b64encode(secrets.token_bytes(32)).decode())
        path.chmod(0o600)
    return path.read_text().strip()


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


def child_env(settings: Settings, *, webhook_secret: str) -> dict[str, str]:
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
        "VG_WEBHOOKS__SECRETS": webhook_secret,
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{settings.api.port}{settings.webhooks.path}",
        "VG_SIMULATOR__WEBHOOK_SECRET": webhook_secret,
    }


def render_demo(settings: Settings, workdir: Path) -> None:
    api = f"http://127.0.0.1:{settings.api.port}/v1"
    headers = {"authorization": f"Bearer {settings.dev_api_key.get_secret_value()}"}
    fields = {"prompt": (None, DEMO_PROMPT), "seconds": (None, "4")}
    if settings.demo_provider == "gemini":
        fields |= {"model": (None, DEMO_VEO_MODEL), "size": (None, "1280x720")}
    with httpx.Client(base_url=api, headers=headers, timeout=60) as client:
        created = client.post("/videos", files=fields)
        created.raise_for_status()
        video = created.json()
        say(f"rendering {video['id']} with {video['model']} ({video['size']}, {video['seconds']} s): {DEMO_PROMPT!r}")
        last_progress = -1
        while video["status"] not in ("completed", "failed"):
            time.sleep(0.5)
            video = client.get(f"/videos/{video['id']}").json()
            if video["progress"] != last_progress:
                last_progress = video["progress"]
                say(f"  {video['status']} {video['progress']}%")
        if video["status"] == "failed":
            raise RuntimeError(f"the demo render failed: {video['error']}")
        say("waiting for the archive worker to copy it to S3")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            archive = client.get(f"/videos/{video['id']}").json().get("archive", {})
            # Every variant: with a live provider the thumbnail and spritesheet are made from the MP4.
            if archive and all(asset.get("state") == "archived" for asset in archive.values()):
                break
            time.sleep(0.5)
        else:
            raise RuntimeError("the demo video was not archived within 2 minutes; see .devstack/logs/worker.log")
        target = workdir / f"{video['id']}.mp4"
        with client.stream("GET", f"/videos/{video['id']}/content") as response, target.open("wb") as out:
            response.raise_for_status()
            for chunk in response.iter_bytes():
                out.write(chunk)
    key = f"{settings.s3.prefix}/{video['id']}/video.mp4"
    say(
        f"done: {video['id']} completed and archived ({archive['video']['bytes']} bytes, "
        f"sha256 {archive['video']['sha256']})"
    )
    say(f"  archived MP4: s3://{settings.s3.bucket}/{key}  (endpoint {settings.s3.endpoint_url})")
    for variant in ("thumbnail", "spritesheet"):
        if asset := archive.get(variant):
            say(f"  {variant}: {asset['bytes']} bytes, sha256 {asset['sha256']}")
    say(
        f"  fetch it:  curl -H 'Authorization: Bearer {settings.dev_api_key.get_secret_value()}' "
        f"{api}/videos/{video['id']}/content -o video.mp4"
    )
    say(f"  saved a copy at {target.resolve()}")


def run_dev_stack(settings: Settings) -> None:
    workdir = Path(".devstack").resolve()
    logs = workdir / "logs"
    workdir.mkdir(exist_ok=True)
    processes: list[ManagedProcess] = []

    def stop_all() -> None:
        for process in reversed(processes):
            process.stop()

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    try:
        say("preparing Postgres (database, migrations, dev caller)")
        asyncio.run(ensure_database(settings.db.url.get_secret_value()))
        migrate.upgrade(settings.db.url.get_secret_value())
        asyncio.run(ensure_dev_caller(settings))

        say("starting SeaweedFS (S3 on :8333)")
        s3 = seaweedfs(settings.s3, data_dir=workdir / "seaweedfs", log_path=logs / "seaweedfs.log").start()
        processes.append(s3)
        s3.wait_http(f"{settings.s3.endpoint_url}/", timeout=60)

        env = child_env(settings, webhook_secret=dev_webhook_secret(workdir))
        say(f"starting the upstream simulator on :{settings.simulator.port}")
        simulator = ManagedProcess(
            "simulator",
            gateway_command("simulator", "--port", str(settings.simulator.port)),
            env,
            logs / "simulator.log",
        ).start()
        processes.append(simulator)
        simulator.wait_http(f"http://127.0.0.1:{settings.simulator.port}/v1/videos")
        if settings.demo_provider == "gemini":
            say(f"starting the Gemini API simulator on :{gemini_port(settings)} (profile 'veo', kind gemini)")
            gemini = ManagedProcess(
                "gemini-simulator",
                gateway_command("simulator", "--kind", "gemini", "--port", str(gemini_port(settings))),
                gemini_simulator_env(settings, env),
                logs / "gemini-simulator.log",
            ).start()
            processes.append(gemini)
            gemini.wait_http(f"http://127.0.0.1:{gemini_port(settings)}/v1beta/models")

        say(f"starting the API on :{settings.api.port}")
        api = ManagedProcess(
            "api", gateway_command("serve", "--port", str(settings.api.port)), env, logs / "api.log"
        ).start()
        processes.append(api)
        api.wait_http(f"http://127.0.0.1:{settings.api.port}/healthz")

        say("starting the archive worker")
        worker = ManagedProcess("worker", gateway_command("worker"), env, logs / "worker.log").start()
        processes.append(worker)

        render_demo(settings, workdir)
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
        say("stopping")
    finally:
        with contextlib.suppress(Exception):
            stop_all()
