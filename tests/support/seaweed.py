"""A private SeaweedFS for the test run: its own ports and data directory, a fresh bucket, stopped at the end.

Import the fixture into a conftest (`from tests.support.seaweed import seaweedfs_s3`); it yields the
`S3Settings` of a bucket made for this run. Give each test its own `prefix` (`settings.model_copy(...)`) so
tests that list or abort uploads see only their own.
"""

from __future__ import annotations

import secrets
import shutil
import time
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from pathlib import Path

import pytest
from botocore.exceptions import BotoCoreError, ClientError
from pydantic import SecretStr

from app.archive.storage import make_client
from app.core.config import S3Settings
from app.dev.processes import ManagedProcess
from app.dev.seaweedfs import SeaweedPorts, seaweedfs


@dataclass(frozen=True)
class PrivateSeaweedFS:
    process: ManagedProcess
    settings: S3Settings
    ports: SeaweedPorts
    directory: Path

    def stop(self) -> None:
        self.process.stop(grace=5)
        # weed leaves its unix sockets in /tmp whatever TMPDIR says, named after the ports; the data (every
        # object the run uploaded, ~200 MB) would otherwise outlive the run in pytest's kept temp dirs.
        for port in astuple(self.ports):
            for socket in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
                socket.unlink(missing_ok=True)
        shutil.rmtree(self.directory / "data", ignore_errors=True)


def start_seaweedfs(directory: Path, *, timeout: float = 30.0) -> PrivateSeaweedFS:
    """Start `weed mini` on free ports under `directory`; returns it once its bucket answers."""
    ports = SeaweedPorts.free()
    settings = S3Settings(
        endpoint_url=f"http://127.0.0.1:{ports.s3}",
        bucket=f"vg-test-{secrets.token_hex(4)}",
        access_key_id=SecretStr(f"test-{secrets.token_hex(6)}"),
        secret_access_key=SecretStr(secrets.token_hex(16)),
        prefix="videos",
    )
    process = seaweedfs(settings, data_dir=directory / "data", log_path=directory / "seaweedfs.log", ports=ports)
    server = PrivateSeaweedFS(process.start(), settings, ports, directory)
    try:
        process.wait_http(f"{settings.endpoint_url}/", timeout=timeout)
        _wait_for_bucket(process, settings, deadline=time.monotonic() + timeout)
    except BaseException:
        server.stop()
        raise
    return server


def _wait_for_bucket(process: ManagedProcess, settings: S3Settings, *, deadline: float) -> None:
    # The S3 port answers before weed mini has created the bucket (and the admin identity that may write it).
    client = make_client(settings)
    try:
        while True:
            try:
                client.head_bucket(Bucket=settings.bucket)
                return
            except (ClientError, BotoCoreError) as error:
                if time.monotonic() > deadline or not process.alive():
                    raise RuntimeError(f"SeaweedFS bucket not ready: {error}\n{process.log_tail()}") from error
                time.sleep(0.1)
    finally:
        client.close()


@pytest.fixture(scope="session")
def seaweedfs_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Settings]:
    """S3 settings for a bucket on a SeaweedFS private to this test run."""
    server = start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"))
    try:
        yield server.settings
    finally:
        server.stop()
