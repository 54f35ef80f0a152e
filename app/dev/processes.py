"""Starting, watching and stopping the stack's processes (SeaweedFS, simulator, API, worker) on loopback.

Used by `video-gateway dev` (`make run`) and by the end-to-end tests, so both run exactly the same
commands. Every child gets its own process group, so stopping it stops anything it spawned.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx

# How long a process may take over its graceful stop before it is killed.
STOP_GRACE_SECONDS = 10.0
KILLED_WAIT_SECONDS = 10.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def gateway_command(*args: str) -> list[str]:
    """`video-gateway …` run with this interpreter, so it works from a venv without activation."""
    return [sys.executable, "-m", "app.cli", *args]


@dataclass
class ManagedProcess:
    name: str
    command: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = field(default=None, repr=False)

    def start(self) -> ManagedProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(  # noqa: S603  (our own fixed commands)
            self.command,
            env={**os.environ, **self.env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_http(self, url: str, *, timeout: float = 30.0) -> None:
        """Block until `url` answers below 500, or fail with the tail of the log."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited early:\n{self.log_tail()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(url, timeout=1.0).status_code < 500:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not answer {url} within {timeout}s:\n{self.log_tail()}")

    def signal(self, signum: int) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)

    def stop(self, *, grace: float = STOP_GRACE_SECONDS) -> int | None:
        """SIGTERM, then SIGKILL after `grace` seconds; returns the exit code."""
        stop_all([self], grace=grace)
        return None if self.process is None else self.process.returncode

    def wait_until(self, deadline: float) -> bool:
        """Whether it exited by `deadline` (monotonic)."""
        assert self.process is not None
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True

    def close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


def stop_all(processes: list[ManagedProcess], *, grace: float = STOP_GRACE_SECONDS) -> list[ManagedProcess]:
    """SIGTERM every process at once, wait up to `grace` seconds for all of them together, then SIGKILL the rest.

    Together, not one after another: four processes each allowed its own grace made a stop last up to four
    times as long. Returns the processes that had to be killed, in the order given.
    """
    started = [process for process in processes if process.process is not None]
    running = [process for process in started if process.alive()]
    for process in running:
        process.signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    killed = [process for process in running if not process.wait_until(deadline)]
    for process in killed:
        process.signal(signal.SIGKILL)
    killed_deadline = time.monotonic() + KILLED_WAIT_SECONDS
    for process in killed:
        process.wait_until(killed_deadline)
    for process in started:
        process.close_log()
    return killed
