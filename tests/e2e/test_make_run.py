"""`make run` itself: `video-gateway dev` started as a developer starts it, in a checkout of its own.

Every port it listens on is a free one given through the environment (`VG_API__PORT`, `VG_SIMULATOR__PORT`,
`VG_DEV__…`), never `make run`'s own (8000, 8100, 8102, 8333, …): a developer's stack may be up on those while
the suite runs. The checkout is a temporary directory with a `.git`, so the stack's database is that directory's
own (`checkout_database_name`), dropped at the end; SIGINT must leave no process and no port behind.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import httpx
import pytest

from app.dev.checkout import checkout_database_name, port_free
from app.dev.processes import free_port
from app.dev.seaweedfs import SeaweedPorts
from tests.support import postgres

pytestmark = pytest.mark.e2e

# The venv's console script, as `make run` runs it (`$(VENV)/bin/video-gateway dev`).
GATEWAY = Path(sys.executable).parent / "video-gateway"
SERVE_TIMEOUT = 180.0
STOP_TIMEOUT = 30.0
PREFIX = "[make run] "
# `make run`'s fixed ports (the worker's metrics on 9100 too): a developer's stack may hold them right now.
MAKE_RUN_PORTS = frozenset({8000, 8100, 8101, 8102, 9100, *SeaweedPorts.dev().all_ports()})
SEAWEEDFS_OTHER_PORTS = 9
START_ATTEMPTS = 3


# ----- ports ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StackPorts:
    api: int
    simulator: int
    receiver: int
    s3: int
    seaweedfs_base: int

    @classmethod
    def pick(cls) -> StackPorts:
        taken: set[int] = set()
        api, simulator, receiver, s3 = (_fresh_port(taken) for _ in range(4))
        return cls(api, simulator, receiver, s3, _fresh_block(taken, SEAWEEDFS_OTHER_PORTS))

    def all(self) -> list[int]:
        others = range(self.seaweedfs_base, self.seaweedfs_base + SEAWEEDFS_OTHER_PORTS)
        return [self.api, self.simulator, self.receiver, self.s3, *others]

    def env(self) -> dict[str, str]:
        return {
            "VG_API__PORT": str(self.api),
            "VG_SIMULATOR__PORT": str(self.simulator),
            "VG_DEV__RECEIVER_PORT": str(self.receiver),
            "VG_DEV__S3_PORT": str(self.s3),
            "VG_DEV__SEAWEEDFS_PORT_BASE": str(self.seaweedfs_base),
        }


def _fresh_port(taken: set[int]) -> int:
    while True:
        port = free_port()
        if port not in taken and port not in MAKE_RUN_PORTS:
            taken.add(port)
            return port


def _fresh_block(taken: set[int], count: int) -> int:
    """The first of `count` consecutive free ports (SeaweedFS's other ports are base … base + 8)."""
    for _ in range(500):
        base = free_port()
        block = set(range(base, base + count))
        if base + count > 65536 or block & (taken | MAKE_RUN_PORTS):
            continue
        if all(port_free(port) for port in block):
            taken.update(block)
            return base
    raise RuntimeError(f"found no {count} consecutive free ports")


# ----- processes -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessId:
    """A process as /proc knows it: pid and start time, so a reused pid is not taken for it."""

    pid: int
    started: int

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        stat_fields = _stat(pid)
        return None if stat_fields is None else cls(pid, int(stat_fields[19]))

    def alive(self) -> bool:
        stat_fields = _stat(self.pid)
        # A zombie has released everything (ports included); its parent has just not reaped it yet.
        return stat_fields is not None and int(stat_fields[19]) == self.started and stat_fields[0] != "Z"


def _stat(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, [19] start time."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2 :].split()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def descendants(root: int) -> set[ProcessId]:
    """Every living process below `root` (the stack's children and anything they spawned)."""
    parents: dict[int, list[int]] = {}
    for pid in _pids():
        stat_fields = _stat(pid)
        if stat_fields is not None:
            parents.setdefault(int(stat_fields[1]), []).append(pid)
    found: set[ProcessId] = set()
    waiting = list(parents.get(root, []))
    while waiting:
        pid = waiting.pop()
        if (process := ProcessId.of(pid)) is not None:
            found.add(process)
        waiting.extend(parents.get(pid, []))
    return found


def still_running(root: int, children: set[ProcessId]) -> str:
    """Each living process of the stack with its state and what it waits in, for a failure's message."""
    lines = []
    for process in sorted(
        {*children, *descendants(root)} | set(filter(None, [ProcessId.of(root)])), key=lambda found: found.pid
    ):
        if not process.alive():
            continue
        try:
            cmdline = Path(f"/proc/{process.pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            wchan = Path(f"/proc/{process.pid}/wchan").read_text()
        except OSError:
            continue
        stat_fields = _stat(process.pid) or ["?"]
        lines.append(f"{process.pid} state {stat_fields[0]} waiting in {wchan or '-'}: {cmdline}")
        lines.append(f"    {signal_masks(process.pid)}")
    return "\n".join(lines) or "(nothing)"


SIGNAL_MASKS = ("SigPnd", "ShdPnd", "SigBlk", "SigIgn", "SigCgt")


def signal_masks(pid: int) -> str:
    """The process's pending, blocked, ignored and caught signals (hex masks, bit n-1 for signal n: SIGINT is 0x2,
    SIGTERM 0x4000), to tell a signal that never arrived from one ignored or blocked."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return "signals: ?"
    fields = dict(line.split(":\t", 1) for line in status.splitlines() if ":\t" in line)
    return " ".join(f"{name} {fields.get(name, '?').strip()}" for name in SIGNAL_MASKS)


def processes_of(checkout: Path) -> set[ProcessId]:
    """Living processes working in `checkout` or naming it (every process the stack starts runs in it)."""
    found: set[ProcessId] = set()
    for pid in _pids():
        if pid == os.getpid():
            continue
        try:
            cwd = Path(os.readlink(f"/proc/{pid}/cwd"))
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if cwd == checkout or checkout in cwd.parents or str(checkout) in cmdline:
            process = ProcessId.of(pid)
            if process is not None and process.alive():
                found.add(process)
    return found


class Output:
    """The lines of a stream, read in a thread so they can be waited for with a timeout."""

    def __init__(self, stream: IO[str]) -> None:
        self.lines: list[str] = []
        self.closed = False
        self._changed = threading.Condition()
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()
        with self._changed:
            self.closed = True
            self._changed.notify_all()

    def wait_for(self, pattern: str, timeout: float) -> re.Match[str] | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for line in self.lines:
                    if match := re.search(pattern, line):
                        return match
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None
                self._changed.wait(min(left, 1.0))

    def text(self) -> str:
        with self._changed:
            return "\n".join(self.lines)

    def join(self, timeout: float = 10.0) -> None:
        """Once the process has exited: the rest of its output."""
        self._thread.join(timeout)


@dataclass
class DevStack:
    checkout: Path
    ports: StackPorts
    env: dict[str, str]
    process: subprocess.Popen[str]
    output: Output
    stderr_path: Path
    children: set[ProcessId] = field(default_factory=set)

    def diagnosis(self) -> str:
        parts = [f"stdout:\n{self.output.text()}", f"stderr:\n{_tail(self.stderr_path)}"]
        logs = self.checkout / ".devstack" / "logs"
        if logs.is_dir():
            parts += [f"{log.name}:\n{_tail(log)}" for log in sorted(logs.glob("*.log"))]
        return "\n\n".join(parts)

    def release(self) -> None:
        """Read what is left of stdout and close it (the process has exited)."""
        self.output.join()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def summary(self) -> list[str]:
        """The stack's own `[make run] …` lines, without the prefix."""
        return [line.removeprefix(PREFIX) for line in self.output.text().splitlines() if line.startswith(PREFIX)]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(none)"


def stack_env(ports: StackPorts) -> dict[str, str]:
    """This process's environment without any `VG_` variable, plus the stack's ports."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("VG_")}
    # The worker serves no metrics: `make run`'s worker may hold 9100, and the test binds nothing it does not pick.
    return {**env, **ports.env(), "VG_WORKER__METRICS_PORT": "0", "PYTHONUNBUFFERED": "1"}


def start_dev(checkout: Path, logs: Path) -> DevStack:
    """`video-gateway dev` in `checkout`, once its port check passed; new ports when another test took one of
    ours between picking and binding (the check then fails at once, before anything started)."""
    for attempt in range(START_ATTEMPTS):
        ports = StackPorts.pick()
        env = stack_env(ports)
        stderr_path = logs / f"dev-{attempt}.stderr"
        with stderr_path.open("w") as stderr:
            process = subprocess.Popen(
                [str(GATEWAY), "dev"],
                cwd=checkout,
                env=env,
                stdout=subprocess.PIPE,
                stderr=stderr,
                text=True,
                start_new_session=True,
            )
        assert process.stdout is not None
        stack = DevStack(checkout, ports, env, process, Output(process.stdout), stderr_path)
        if stack.output.wait_for(r"^\[make run\] ", timeout=30) is not None:
            return stack
        process.wait(timeout=10)
        stack.release()
        if "is in use (another `make run`?)" not in _tail(stderr_path) or attempt == START_ATTEMPTS - 1:
            pytest.fail(f"`video-gateway dev` exited {process.returncode} before starting:\n{stack.diagnosis()}")
    raise AssertionError("unreachable")


def stop(stack: DevStack) -> None:
    """Ctrl-C, as a developer stops it; SIGKILL for whatever a failure left running (only what it started)."""
    process = stack.process
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    stack.release()
    for leftover in stack.children | processes_of(stack.checkout):
        if leftover.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(leftover.pid, signal.SIGKILL)


def remove_seaweedfs_traces(stack: DevStack) -> None:
    # weed leaves its unix sockets in /tmp, named after the ports; its data (the demo's objects) in the checkout.
    for port in stack.ports.all():
        for socket_file in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):
            socket_file.unlink(missing_ok=True)
    shutil.rmtree(stack.checkout / ".devstack" / "seaweedfs", ignore_errors=True)


@pytest.fixture
def checkout(tmp_path: Path) -> Iterator[Path]:
    """A directory that looks like a clone (`.git`): where `make run` is run, and the database named after it."""
    directory = (tmp_path / "clone").resolve()
    (directory / ".git").mkdir(parents=True)
    database = checkout_database_name(directory)
    try:
        yield directory
    finally:
        postgres.drop_database(database)


def test_make_run_renders_the_demo_serves_and_stops_cleanly(checkout: Path, tmp_path: Path) -> None:
    stack = start_dev(checkout, tmp_path)
    try:
        ports = stack.ports
        if stack.output.wait_for(r"^\[make run\] serving: ", timeout=SERVE_TIMEOUT) is None:
            pytest.fail(f"no `serving:` line within {SERVE_TIMEOUT:.0f} s:\n{stack.diagnosis()}")
        lines = stack.summary()
        text = "\n".join(lines)
        # Every process the stack started, before it is stopped (once it exits they belong to no one).
        stack.children = descendants(stack.process.pid)
        assert len(stack.children) >= 4, stack.children  # SeaweedFS, simulator, API, worker

        database = checkout_database_name(checkout)
        assert re.fullmatch(r"video_gateway_[a-z0-9_]+_[0-9a-f]{8}", database)
        assert f"  database: {database} on 127.0.0.1:5432 (this checkout's own; VG_DB__URL overrides)" in lines

        done = re.search(r"^done: (video_\w+) completed and archived \(\d+ bytes, sha256 [0-9a-f]{64}\)$", text, re.M)
        assert done, text
        video = done.group(1)
        assert (
            f"  archived MP4: s3://video-gateway/videos/{video}/video.mp4  (endpoint http://127.0.0.1:{ports.s3}, "
            f"data in {checkout / '.devstack' / 'seaweedfs'})"
        ) in lines
        assert (checkout / ".devstack" / f"{video}.mp4").stat().st_size > 0
        assert (
            f"  callback video.archived for {video} arrived at http://127.0.0.1:{ports.receiver}/callbacks, "
            "signature verified with standardwebhooks: Webhook(secret).verify(body, headers)"
        ) in lines

        admin_key = (checkout / ".devstack" / "admin-key").read_text().strip()
        assert (
            f"  console: http://127.0.0.1:{ports.api}/console  (sign in with the admin key {admin_key}, "
            f"kept in {checkout / '.devstack' / 'admin-key'})"
        ) in lines
        callers = httpx.get(
            f"http://127.0.0.1:{ports.api}/v1/admin/callers",
            headers={"authorization": f"Bearer {admin_key}"},
            timeout=10,
        )
        assert callers.status_code == 200, callers.text
        assert lines[-1].startswith(f"serving: API http://127.0.0.1:{ports.api}/v1 ")

        cli_env = checkout / ".devstack" / "cli.env"
        assert stat.S_IMODE(cli_env.stat().st_mode) == 0o600
        # The operator CLI anywhere in the checkout, with nothing exported, reaches this stack's database.
        subdirectory = checkout / "app" / "somewhere"
        subdirectory.mkdir(parents=True)
        bare = {name: value for name, value in os.environ.items() if not name.startswith("VG_")}
        status = subprocess.run(
            [str(GATEWAY), "status"], cwd=subdirectory, env=bare, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 0, status.stdout + status.stderr
        assert "Archive queue" in status.stdout, status.stdout
        succeeded = re.search(r"succeeded\W+(\d+)", status.stdout)
        assert succeeded and int(succeeded.group(1)) >= 1, status.stdout

        # A second `make run` in the same checkout stops at once, naming one port, and touches nothing.
        started = time.monotonic()
        second = subprocess.run(
            [str(GATEWAY), "dev"], cwd=checkout, env=stack.env, capture_output=True, text=True, timeout=60
        )
        assert time.monotonic() - started < 15
        assert second.returncode == 1, second.stdout + second.stderr
        assert second.stdout == ""
        refused = re.fullmatch(r"port (\d+) is in use \(another `make run`\?\)\n", second.stderr)
        assert refused, second.stderr
        assert int(refused.group(1)) in ports.all()
        assert stack.process.poll() is None  # the first one serves on

        stack.process.send_signal(signal.SIGINT)
        try:
            stack.process.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"not stopped {STOP_TIMEOUT:.0f} s after SIGINT; still running:\n"
                f"{still_running(stack.process.pid, stack.children)}\n\n{stack.diagnosis()}"
            )
        assert stack.process.returncode == 0, stack.diagnosis()
        assert "[make run] stopping" in stack.output.text()
        assert not [process for process in stack.children if process.alive()]
        assert not processes_of(checkout)
        assert _all_free(ports.all()), [port for port in ports.all() if not port_free(port)]
    finally:
        stop(stack)
        remove_seaweedfs_traces(stack)


def _all_free(ports: list[int], *, grace: float = 3.0) -> bool:
    """Whether every port binds (a moment's grace: another test may briefly probe a port it was just given)."""
    deadline = time.monotonic() + grace
    while not all(port_free(port) for port in ports):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True
