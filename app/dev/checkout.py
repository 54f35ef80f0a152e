"""What `make run` keeps per checkout: its own database name, and the ports it checks are free before starting.

Two clones on one machine must not share a database: a video of one, whose objects live in the other's
`.devstack/seaweedfs`, would be listed by both and answer 500 for its content in one of them. So unless
`VG_DB__URL` is set explicitly, the dev stack uses `video_gateway_<slug of the checkout dir>_<8 hex of the
sha256 of its absolute path>` on the configured server, created if missing.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.config import DatabaseSettings

DATABASE_PREFIX = "video_gateway"
# Postgres truncates identifiers beyond 63 bytes (NAMEDATALEN - 1): a longer name would silently collide.
MAX_IDENTIFIER = 63
DIGEST_CHARS = 8
DATABASE_URL_VARIABLES = ("VG_DB__URL", "VG_DB__URL_FILE")


def checkout_database_name(checkout: Path) -> str:
    """`video_gateway_<slug>_<hash>`: lowercase [a-z0-9_], at most 63 characters, stable for one path."""
    absolute = checkout.resolve()
    digest = hashlib.sha256(str(absolute).encode("utf-8")).hexdigest()[:DIGEST_CHARS]
    room = MAX_IDENTIFIER - len(DATABASE_PREFIX) - len(digest) - 2  # the two underscores around the slug
    slug = re.sub(r"[^a-z0-9]+", "_", absolute.name.lower()).strip("_")[:room].rstrip("_")
    return "_".join(part for part in (DATABASE_PREFIX, slug, digest) if part)


def explicit_database_url(environ: Mapping[str, str]) -> bool:
    """Whether the operator chose the database (`VG_DB__URL` or `VG_DB__URL_FILE` set). The CLI never reads
    `.devstack/cli.env` for `dev` (app/cli.py), so a value here is the operator's, not a previous run's."""
    return any(environ.get(name) for name in DATABASE_URL_VARIABLES)


def checkout_database_url(
    configured_url: str,
    checkout: Path,
    *,
    environ: Mapping[str, str] | None = None,
) -> tuple[str, bool]:
    """The database URL the dev stack uses, and whether it is the operator's explicit choice.

    Not chosen: this checkout's database on the default server (127.0.0.1:5432, user postgres), whatever URL a
    previous run left in `.devstack/cli.env`.
    """
    source = os.environ if environ is None else environ
    if explicit_database_url(source):
        return configured_url, True
    default = DatabaseSettings().url.get_secret_value()
    url = make_url(default).set(database=checkout_database_name(checkout))
    return url.render_as_string(hide_password=False), False


def database_name(url: str) -> str:
    return make_url(url).database or ""


def database_server(url: str) -> str:
    parsed = make_url(url)
    return f"{parsed.host or 'localhost'}:{parsed.port or 5432}"


# ----- ports --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Listener:
    """A port the stack will listen on, and the address it binds."""

    port: int
    what: str
    host: str = "127.0.0.1"


class PortInUse(Exception):
    def __init__(self, listener: Listener) -> None:
        self.listener = listener
        super().__init__(f"port {listener.port} is in use (another `make run`?)")


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether a listener could bind `host:port` now (what uvicorn and weed do: SO_REUSEADDR, so a
    connection in TIME_WAIT left by a stopped stack does not count as in use)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(listeners: Iterable[Listener]) -> None:
    """Raise `PortInUse` for the first listener whose port is taken."""
    for listener in listeners:
        if not port_free(listener.port, listener.host):
            raise PortInUse(listener)
