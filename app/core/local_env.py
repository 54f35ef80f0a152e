"""The settings `make run` leaves for the operator CLI of the same checkout: `.devstack/cli.env`.

`make run` (app/dev/stack.py) writes the environment its processes run with (dev mode, this checkout's
database, S3 and simulator, the dev admin key) to `.devstack/cli.env`, readable by its owner only. The CLI
(`video-gateway …`) run anywhere inside that checkout reads it before its settings, so `status`, `keys`,
`replay` and the rest work right after `make run` with no variable exported. What the environment already
sets wins, so an operator can still point the CLI elsewhere; outside a checkout with the file nothing is read.
`VG_CHECKOUT_ENV=0` turns the file off (the test suite sets it, so a developer's own `make run` never leaks
into its processes); the service's own processes (`serve`, `worker`, `simulator`, `dev`) never read it.

The format is one `NAME=value` per line, the value taken literally to the end of the line (no quoting, no
expansion); blank lines and `#` comments are skipped. Values never hold a newline (refused when written).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, MutableMapping
from pathlib import Path

DEVSTACK_DIR = ".devstack"
CLI_ENV_FILE = "cli.env"
DISABLE_VARIABLE = "VG_CHECKOUT_ENV"


def write_env_file(path: Path, values: Mapping[str, str]) -> None:
    """Write `values` as `NAME=value` lines, owner-only (it holds the dev keys)."""
    lines = ["# Written by `make run` for the video-gateway CLI of this checkout; rewritten on every run."]
    for name, value in values.items():
        if "\n" in value or "\r" in value or "=" in name or not name:
            raise ValueError(f"{name!r} cannot be written to {path.name}")
        lines.append(f"{name}={value}")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text("\n".join(lines) + "\n", encoding="utf-8")
    temporary.chmod(0o600)
    temporary.replace(path)


def read_env_file(path: Path) -> dict[str, str]:
    values: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip() or line.lstrip().startswith("#") or "=" not in line:
            continue
        name, _, value = line.partition("=")
        values[name.strip()] = value
    return values


def find_env_file(start: Path) -> Path | None:
    """`.devstack/cli.env` in `start` or the nearest parent that has one, not past the checkout's root."""
    for directory in (start, *start.parents):
        candidate = directory / DEVSTACK_DIR / CLI_ENV_FILE
        if candidate.is_file():
            return candidate
        if (directory / ".git").exists():
            return None
    return None


def load_checkout_env(environ: MutableMapping[str, str] | None = None, *, start: Path | None = None) -> Path | None:
    """Fill what `environ` (the process environment by default) lacks from this checkout's file; its path,
    or None when there is none."""
    target = os.environ if environ is None else environ
    if target.get(DISABLE_VARIABLE) == "0":
        return None
    path = find_env_file((start or Path.cwd()).resolve())
    if path is None:
        return None
    for name, value in read_env_file(path).items():
        target.setdefault(name, value)
    return path
