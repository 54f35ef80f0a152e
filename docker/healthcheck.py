"""The image's HEALTHCHECK: `GET /healthz` on the API port when the container runs `video-gateway serve`.

One image runs four roles. Only the API listens on VG_API__PORT; the worker, `migrate` and the simulator would
fail an HTTP check there and be marked unhealthy (and replaced, under Swarm). So the role is read from PID 1's
command line (the container's command, also under `docker run --init`): for any role but `serve` the check
passes while the process lives, and the container exits when it dies.

VG_HEALTHCHECK_PID names another process to read the role from (the packaging test runs this outside a container).
Standard library only; exit 0 = healthy, 1 = unhealthy.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path


def role_is_api(pid: str) -> bool:
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    return b"serve" in arguments


def main() -> int:
    if not role_is_api(os.environ.get("VG_HEALTHCHECK_PID", "1")):
        return 0
    url = f"http://127.0.0.1:{os.environ.get('VG_API__PORT', '8000')}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=4) as response:
            healthy = response.status == 200
    except (urllib.error.URLError, OSError) as error:
        sys.stderr.write(f"{url}: {error}\n")
        return 1
    return 0 if healthy else 1


if __name__ == "__main__":
    sys.exit(main())
