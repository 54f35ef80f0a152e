"""`python -m bench.instructions [--paths delivery,retrieve,list,floor] [--requests 200,600]`: the CPU instructions
one request of the API's hot routes costs, counted in process with callgrind (valgrind).

Why instructions and not wall clock: on a shared two-core machine wall clock moves ±30 % between runs, while an
instruction count repeats to well within a percent, so a change of a few percent to a route shows. Each figure is
(instructions for the larger number of requests minus for the smaller) / their difference: the interpreter's start,
the imports and the app's start cancel out. Requests go one after another through httpx's ASGI transport (no
socket, no server): what is counted is the app, its middlewares, its database driver and the client's share, the
same for every path. `floor` is a bare ASGI app behind the same client, the least any request costs here.

Paths: `delivery` (a signed `video.completed` naming a known video, a new webhook id each time), `retrieve`
(`GET /v1/videos/{id}`) and `list` (`GET /v1/videos?limit=20`, twenty videos), each with the caller's key. The
database is a throwaway one on the local Postgres; nothing else is started (no S3 call happens on these paths).
Needs `valgrind` (Debian: `apt-get install valgrind`); about two minutes per path on two cores.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr
from standardwebhooks import Webhook

from app.auth import service as auth_service
from app.core.config import ApiSettings, DatabaseSettings, LimitSettings, Mode, Settings, WebhookSettings
from app.core.db import Database
from app.models import Video, VideoStatus
from bench.stack import sqlalchemy_url, throwaway_database

PATHS = ("delivery", "retrieve", "list", "floor")
LISTED_VIDEOS = 20
WEBHOOK_SECRET = "whsec_" + "aW5zdHJ1Y3Rpb25zLWJlbmNoLXNlY3JldC0zMmJ5dGVz"
_TOTALS = re.compile(r"^(?:totals|summary): (\d+)", re.MULTILINE)


def settings_for(url: str) -> Settings:
    return Settings(
        mode=Mode.DEV,
        db=DatabaseSettings(url=SecretStr(url), pool_size=5),
        api=ApiSettings(refresh_min_interval_seconds=3600),
        webhooks=WebhookSettings(secrets=SecretStr(WEBHOOK_SECRET)),
        # Every request counted, none refused: the rate limit is far above what the run sends.
        limits=LimitSettings(requests_per_minute=1_000_000),
    )


async def seed(url: str) -> dict[str, Any]:
    """A caller with its key and twenty completed videos; the first one's upstream id is what deliveries name."""
    database = Database.connect(DatabaseSettings(url=SecretStr(url)))
    try:
        async with database.transaction() as session:
            issued = await auth_service.create_caller(session, name=f"instructions-{uuid.uuid4().hex[:8]}")
            ids = [f"video_{uuid.uuid4().hex}" for _ in range(LISTED_VIDEOS)]
            for video_id in ids:
                session.add(
                    Video(
                        id=video_id,
                        caller_id=issued.caller.id,
                        upstream_id=f"up_{video_id}",
                        upstream_profile="default",
                        model="sora-2",
                        size="720x1280",
                        seconds="4",
                        prompt="counted",
                        status=VideoStatus.COMPLETED,
                        progress=100,
                    )
                )
        return {"key": issued.key, "video_id": ids[0], "upstream_id": f"up_{ids[0]}"}
    finally:
        await database.dispose()


async def floor_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": b"{}"})


def delivery(upstream_id: str) -> tuple[bytes, dict[str, str]]:
    webhook_id = f"wh_{secrets.token_hex(16)}"
    body = json.dumps(
        {
            "id": f"evt_{secrets.token_hex(16)}",
            "object": "event",
            "created_at": int(time.time()),
            "type": "video.completed",
            "data": {"id": upstream_id},
        }
    ).encode()
    signature = Webhook(WEBHOOK_SECRET).sign(webhook_id, datetime.now(UTC), body.decode())
    headers = {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(time.time())),
        "webhook-signature": signature,
    }
    return body, headers


async def send_requests(path: str, requests: int, url: str, seeded: dict[str, Any]) -> None:
    """The child's work under callgrind: the app started, `requests` requests, the app stopped."""
    from app.main import create_app

    app: Any = floor_app if path == "floor" else create_app(settings_for(url))
    auth = {"authorization": f"Bearer {seeded['key']}"}
    lifespan = app.router.lifespan_context(app) if path != "floor" else None
    if lifespan is not None:
        await lifespan.__aenter__()
    try:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway.bench") as client:
            for _ in range(requests):
                if path == "delivery":
                    # Signed as it is sent: under callgrind a run outlasts the receiver's ±300 s window. The signing
                    # is counted (the client's share, about what the receiver's check costs), the same on every tree.
                    body, headers = delivery(seeded["upstream_id"])
                    response = await client.post("/webhooks/openai", content=body, headers=headers)
                elif path == "retrieve":
                    response = await client.get(f"/v1/videos/{seeded['video_id']}", headers=auth)
                elif path == "list":
                    response = await client.get("/v1/videos", params={"limit": LISTED_VIDEOS}, headers=auth)
                else:
                    response = await client.get("/")
                if response.status_code != 200:
                    raise SystemExit(f"{path}: {response.status_code} {response.text}")
    finally:
        if lifespan is not None:
            await lifespan.__aexit__(None, None, None)


def counted(path: str, requests: int, url: str, seeded_file: Path, scratch: Path) -> int:
    """Total instructions of a child process sending `requests` requests on `path`, from callgrind's output."""
    out = scratch / f"callgrind.{path}.{requests}"
    command = [
        "valgrind",
        "--tool=callgrind",
        "--collect-atstart=yes",
        f"--callgrind-out-file={out}",
        sys.executable,
        "-m",
        "bench.instructions",
        "--child",
        path,
        str(requests),
        url,
        str(seeded_file),
    ]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    subprocess.run(command, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    found = _TOTALS.search(out.read_text(errors="replace"))
    if found is None:
        raise SystemExit(f"no totals in {out}")
    return int(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument("--paths", default=",".join(PATHS), help="comma-separated: " + ", ".join(PATHS))
    parser.add_argument("--requests", default="200,600", help="the two request counts, comma-separated")
    parser.add_argument("--child", nargs=4, metavar=("PATH", "N", "URL", "SEEDED"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        path, requests, url, seeded_file = args.child
        asyncio.run(send_requests(path, int(requests), url, json.loads(Path(seeded_file).read_text())))
        return 0
    paths = [path for path in args.paths.split(",") if path]
    low, high = sorted(int(n) for n in args.requests.split(","))
    with throwaway_database("vg_instructions") as dsn, tempfile.TemporaryDirectory(prefix="vg-instr-") as tmp:
        url = sqlalchemy_url(dsn)
        scratch = Path(tmp)
        seeded_file = scratch / "seeded.json"
        seeded_file.write_text(json.dumps(asyncio.run(seed(url))))
        print(f"{'path':<10} {'instructions / request':>24}")
        for path in paths:
            per_request = (
                counted(path, high, url, seeded_file, scratch) - counted(path, low, url, seeded_file, scratch)
            ) / (high - low)
            print(f"{path:<10} {per_request / 1e6:>22.2f} M", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
