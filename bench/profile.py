"""py-spy around a benchmark: where a gateway process spends its time under the benchmark's load.

`py-spy record --format raw` writes collapsed stacks (kept beside the results JSON); `summarize` turns them
into shares by package and by our own functions for the doc. py-spy attaches with ptrace (root, or
CAP_SYS_PTRACE); when it is missing the benchmark goes on without a profile and says so.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Profiler:
    process: subprocess.Popen[bytes] | None
    output: Path

    def stop(self) -> Path | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            # SIGINT makes py-spy write what it sampled so far.
            self.process.send_signal(signal.SIGINT)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        return self.output if self.output.exists() else None


def summarize(path: Path, *, top: int = 12) -> dict[str, list[tuple[str, float]]]:
    """Shares of busy samples from py-spy's collapsed stacks. Threads parked on a lock are left out.

    - `by_package`: where the CPU goes, by the package of the innermost frame (sqlalchemy, asyncpg, app…);
    - `gateway`: our own functions (`app/…`), inclusive (each counted once per stack);
    - `self`: the innermost frames.
    """
    own: Counter[str] = Counter()
    packages: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    idle = total = 0
    for line in path.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        if _name(frames[-1]) in IDLE_FRAMES:
            idle += count  # a pool thread parked on a lock: not where the CPU goes
            continue
        total += count
        own[_short(frames[-1])] += count
        packages[_package(frames[-1])] += count
        for frame in {_short(f) for f in frames if _path(f).startswith("app/") and not _path(f).startswith("app/cli")}:
            ours[frame] += count
    if not total:
        return {"busy_samples": [("busy", 0), ("parked", idle)], "by_package": [], "gateway": [], "self": []}

    def shares(counter: Counter[str], n: int) -> list[tuple[str, float]]:
        return [(name, round(100 * k / total, 1)) for name, k in counter.most_common(n)]

    return {
        "busy_samples": [("busy", total), ("parked", idle)],
        "by_package": shares(packages, top),
        "gateway": shares(ours, top),
        "self": shares(own, top),
    }


IDLE_FRAMES = frozenset({"Condition.wait", "Event.wait", "_worker", "select", "poll", "epoll", "wait"})


def _name(frame: str) -> str:
    return frame.partition(" (")[0]


def _path(frame: str) -> str:
    where = frame.partition(" (")[2].rstrip(")")
    return where.rsplit(":", 1)[0]


def _package(frame: str) -> str:
    path = _path(frame)
    if path.startswith("<"):
        return "python (builtin)"
    head = path.split("/", 1)[0]
    return head.removesuffix(".py") if "/" in path else f"stdlib {head.removesuffix('.py')}"


def _short(frame: str) -> str:
    # "function (path/to/module.py:123)" -> "function (path/to/module.py)"
    return f"{_name(frame)} ({_path(frame)})"


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


def start_py_spy(pid: int, output: Path, *, rate: int = 50) -> Profiler:
    binary = py_spy()
    if binary is None:
        sys.stderr.write("py-spy not installed: no profile\n")
        return Profiler(None, output)
    output.parent.mkdir(parents=True, exist_ok=True)
    process = subprocess.Popen(
        [binary, "record", "--pid", str(pid), "--rate", str(rate), "--format", "raw", "-o", str(output)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return Profiler(process, output)
