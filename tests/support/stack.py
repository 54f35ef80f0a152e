"""The end-to-end stack: real processes on loopback (the simulators sending signed webhooks, the API, workers) over
a database and an S3 prefix of their own; `running_stack` starts them, the e2e fixtures hand them out."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from app.core.config import S3Settings
from app.dev.processes import ManagedProcess, free_port, gateway_command, stop_all
from tests.support.factories import make_caller
from tests.support.settings import SIMULATOR_KEY, TEST_WEBHOOK_SECRET

VEO_MODELS = ("veo-3.1-generate-preview", "veo-3.1-fast-generate-preview")


@dataclass
class Stack:
    api_url: str
    simulator_url: str
    database_url: str
    s3: S3Settings
    env: dict[str, str]
    logs: Path
    workers: list[ManagedProcess] = field(default_factory=list)
    # The Gemini API simulator behind the `veo` profile (kind gemini), when the stack runs one.
    gemini_url: str | None = None
    # The live providers' simulators by kind (`running_stack(live=...)`).
    live_urls: dict[str, str] = field(default_factory=dict)

    def new_caller_key(self) -> str:
        """A new caller of the stack's database; its plain key."""
        return asyncio.run(make_caller(self.database_url)).key

    def start_worker(self, name: str | None = None, **env: str) -> ManagedProcess:
        worker = ManagedProcess(
            name or f"worker-{len(self.workers)}",
            gateway_command("worker"),
            {**self.env, **env},
            self.logs / f"{name or f'worker-{len(self.workers)}'}.log",
        ).start()
        self.workers.append(worker)
        return worker

    def simulator(self) -> httpx.Client:
        return httpx.Client(base_url=self.simulator_url, headers={"authorization": f"Bearer {SIMULATOR_KEY}"})

    def gemini(self) -> httpx.Client:
        assert self.gemini_url is not None, "this stack runs no Gemini simulator"
        return httpx.Client(base_url=self.gemini_url, headers={"x-goog-api-key": SIMULATOR_KEY})


def veo_env(*, gemini_port: int, api_port: int) -> tuple[dict[str, str], dict[str, str]]:
    """(the gateway's extra env for a `veo` profile of kind gemini, the Gemini simulator's own overrides)."""
    profile = {
        "kind": "gemini",
        "base_url": f"http://127.0.0.1:{gemini_port}",
        "api_key": SIMULATOR_KEY,
        "models": list(VEO_MODELS),
        "webhook_secrets": TEST_WEBHOOK_SECRET,
        "retry_base_seconds": 0.2,
        "retry_max_seconds": 1,
    }
    simulator = {
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{api_port}/webhooks/veo",
        "VG_SIMULATOR__TTL_SECONDS": str(2 * 24 * 3600),
    }
    return {"VG_UPSTREAMS": json.dumps({"veo": profile})}, simulator


# The live providers' simulators a stack may run beside the OpenAI one, each behind a profile named after its
# kind, with the models the e2e tests render there: (path prefix of the API, models).
LIVE_KINDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "seedance": ("/api/v3", ("seedance-1-0-pro-250528",)),
    "replicate": ("", ("wan-video/wan-2.2-t2v-fast", "google/veo-3")),
    "fal": ("", ("fal-ai/bytedance/seedance/v1/pro/text-to-video", "fal-ai/veo3")),
}


def live_profiles(ports: dict[str, int], *, api_port: int) -> dict[str, dict[str, object]]:
    """The gateway's `VG_UPSTREAMS` for one profile per live kind, each with its webhook sent per request."""
    profiles: dict[str, dict[str, object]] = {}
    for kind, port in ports.items():
        prefix, models = LIVE_KINDS[kind]
        profile: dict[str, object] = {
            "kind": kind,
            "base_url": f"http://127.0.0.1:{port}{prefix}",
            "api_key": SIMULATOR_KEY,
            "models": list(models),
            "webhook_url": f"http://127.0.0.1:{api_port}/webhooks/{kind}",
            # The simulators serve their files from their own address (the providers' CDNs in production).
            "content_redirect_hosts": ["127.0.0.1"],
            "retry_base_seconds": 0.2,
            "retry_max_seconds": 1,
        }
        if kind == "replicate":
            profile["webhook_secrets"] = TEST_WEBHOOK_SECRET
        if kind == "fal":
            profile["webhook_jwks_url"] = f"http://127.0.0.1:{port}/.well-known/jwks.json"
        profiles[kind] = profile
    return profiles


def stack_env(
    *, database_url: str, s3: S3Settings, simulator_port: int, api_port: int, data_dir: Path
) -> dict[str, str]:
    return {
        "VG_MODE": "dev",
        # Never a developer's own `make run` settings (.devstack/cli.env) in the stack's processes or commands.
        "VG_CHECKOUT_ENV": "0",
        "VG_LOG_LEVEL": "INFO",
        "VG_DB__URL": database_url,
        "VG_UPSTREAM__BASE_URL": f"http://127.0.0.1:{simulator_port}/v1",
        "VG_UPSTREAM__API_KEY": SIMULATOR_KEY,
        "VG_API__REFRESH_MIN_INTERVAL_SECONDS": "0.2",
        "VG_WEBHOOKS__SECRETS": TEST_WEBHOOK_SECRET,
        "VG_S3__ENDPOINT_URL": s3.endpoint_url or "",
        "VG_S3__BUCKET": s3.bucket,
        "VG_S3__PREFIX": s3.prefix,
        "VG_S3__PART_SIZE_BYTES": str(s3.part_size_bytes),
        "VG_S3__ACCESS_KEY_ID": s3.access_key_id.get_secret_value(),
        "VG_S3__SECRET_ACCESS_KEY": s3.secret_access_key.get_secret_value(),
        # The suite drives hundreds of renders through a few callers; the default limits would refuse them.
        "VG_LIMITS__MAX_CONCURRENT_RENDERS": "1000",
        "VG_LIMITS__REQUESTS_PER_MINUTE": "100000",
        "VG_LIMITS__BUDGET_USD_PER_PERIOD": "100000",
        "VG_WORKER__POLL_INTERVAL_SECONDS": "0.1",
        "VG_WORKER__LEASE_SECONDS": "4",
        "VG_WORKER__HEARTBEAT_SECONDS": "1",
        "VG_WORKER__RETRY_BASE_SECONDS": "0.2",
        "VG_WORKER__RETRY_MAX_SECONDS": "1",
        "VG_WORKER__RECONCILE_INTERVAL_SECONDS": "1",
        "VG_WORKER__SHUTDOWN_GRACE_SECONDS": "20",
        "VG_SIMULATOR__API_KEY": SIMULATOR_KEY,
        "VG_SIMULATOR__QUEUE_SECONDS": "0.2",
        "VG_SIMULATOR__RENDER_SECONDS": "1.0",
        "VG_SIMULATOR__FPS": "4",
        "VG_SIMULATOR__DATA_DIR": str(data_dir),
        "VG_SIMULATOR__WEBHOOK_URL": f"http://127.0.0.1:{api_port}/webhooks/openai",
        "VG_SIMULATOR__WEBHOOK_SECRET": TEST_WEBHOOK_SECRET,
        "VG_SIMULATOR__WEBHOOK_RETRY_BASE_SECONDS": "0.2",
    }


@contextmanager
def running_stack(
    *,
    database_url: str,
    s3: S3Settings,
    workdir: Path,
    workers: int = 1,
    gemini: bool = False,
    gemini_env: dict[str, str] | None = None,
    live: tuple[str, ...] = (),
    **overrides: str,
) -> Iterator[Stack]:
    """The stack's processes; `gemini=True` adds the Gemini API simulator behind a `veo` profile, with
    `gemini_env` overriding that simulator's own settings; `live` adds the simulators of those kinds
    (`LIVE_KINDS`), each behind a profile named after its kind."""
    simulator_port, api_port, gemini_port = free_port(), free_port(), free_port()
    live_ports = {kind: free_port() for kind in live}
    logs = workdir / "logs"
    veo, gemini_overrides = veo_env(gemini_port=gemini_port, api_port=api_port) if gemini else ({}, {})
    if live:
        profiles = {**json.loads(veo.get("VG_UPSTREAMS", "{}")), **live_profiles(live_ports, api_port=api_port)}
        veo = {**veo, "VG_UPSTREAMS": json.dumps(profiles)}
    env = {
        **stack_env(
            database_url=database_url,
            s3=s3,
            simulator_port=simulator_port,
            api_port=api_port,
            data_dir=workdir / "sim-data",
        ),
        **veo,
        **overrides,
    }
    gemini_simulator = None
    if gemini:
        gemini_simulator = ManagedProcess(
            "gemini-simulator",
            gateway_command("simulator", "--kind", "gemini", "--port", str(gemini_port)),
            {**env, "VG_SIMULATOR__DATA_DIR": str(workdir / "gemini-data"), **gemini_overrides, **(gemini_env or {})},
            logs / "gemini-simulator.log",
        ).start()
    live_simulators = [
        ManagedProcess(
            f"{kind}-simulator",
            gateway_command("simulator", "--kind", kind, "--port", str(port)),
            {**env, "VG_SIMULATOR__DATA_DIR": str(workdir / f"{kind}-data"), "VG_SIMULATOR__WEBHOOK_URL": ""},
            logs / f"{kind}-simulator.log",
        ).start()
        for kind, port in live_ports.items()
    ]
    simulator = ManagedProcess(
        "simulator", gateway_command("simulator", "--port", str(simulator_port)), env, logs / "simulator.log"
    ).start()
    api = ManagedProcess("api", gateway_command("serve", "--port", str(api_port)), env, logs / "api.log").start()
    stack = Stack(
        api_url=f"http://127.0.0.1:{api_port}",
        simulator_url=f"http://127.0.0.1:{simulator_port}",
        database_url=database_url,
        s3=s3,
        env=env,
        logs=logs,
        gemini_url=f"http://127.0.0.1:{gemini_port}" if gemini else None,
        live_urls={kind: f"http://127.0.0.1:{port}" for kind, port in live_ports.items()},
    )
    try:
        simulator.wait_http(f"{stack.simulator_url}/v1/videos")
        if gemini_simulator is not None:
            gemini_simulator.wait_http(f"{stack.gemini_url}/v1beta/models")
        for live_simulator, url in zip(live_simulators, stack.live_urls.values(), strict=True):
            live_simulator.wait_http(url)
        api.wait_http(f"{stack.api_url}/healthz")
        for _ in range(workers):
            stack.start_worker()
        yield stack
    finally:
        extra = [] if gemini_simulator is None else [gemini_simulator]
        stop_all([*stack.workers, api, simulator, *extra, *live_simulators])
        if os.environ.get("VG_TEST_KEEP_LOGS"):
            print(f"e2e logs kept in {logs}")  # noqa: T201
