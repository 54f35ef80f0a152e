"""Defect 6 against a real `video-gateway serve` process: slow and idle clients are cut off, heads are bounded,
connections are limited.

Before the fix a client sending one header byte every 0.2 s was held open for as long as it liked (uvicorn has
no header timeout of its own), and a 200 KB header was accepted.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.dev.processes import free_port, gateway_command

HEADER_TIMEOUT = 1.0
KEEP_ALIVE = 1
MAX_HEADER_BYTES = 8192
LIMIT_CONCURRENCY = 6
# How much later than the timeout a close may come (a loaded machine, the test's own polling).
SLACK = 1.5


@pytest.fixture(scope="module")
def api_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    port = free_port()
    log = tmp_path_factory.mktemp("serve") / "api.log"
    env = {
        **os.environ,
        "VG_MODE": "dev",
        "VG_WEBHOOKS__ENABLED": "false",
        "VG_LOG_LEVEL": "WARNING",
        "VG_API__PORT": str(port),
        "VG_API__HEADER_TIMEOUT_SECONDS": str(HEADER_TIMEOUT),
        "VG_API__KEEP_ALIVE_TIMEOUT_SECONDS": str(KEEP_ALIVE),
        "VG_API__MAX_HEADER_BYTES": str(MAX_HEADER_BYTES),
        "VG_API__LIMIT_CONCURRENCY": str(LIMIT_CONCURRENCY),
    }
    with Path(log).open("wb") as output:
        process = subprocess.Popen(gateway_command("serve"), env=env, stdout=output, stderr=subprocess.STDOUT)
    try:
        # Generous: on a busy shared machine importing the app alone can take tens of seconds.
        deadline = time.monotonic() + 120
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the API did not start ({process.poll()=}):\n{log.read_text()}") from None
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.settimeout(0.1)
    return sock


def read_until_closed(sock: socket.socket, *, within: float) -> tuple[bytes, float | None]:
    """What the server sent, and when (from now) it closed the connection; None if it was still open."""
    received = b""
    start = time.monotonic()
    while time.monotonic() - start < within:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            continue
        except ConnectionResetError:
            return received, time.monotonic() - start
        if not chunk:
            return received, time.monotonic() - start
        received += chunk
    return received, None


def healthz(sock: socket.socket) -> bytes:
    sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
    received = b""
    deadline = time.monotonic() + 5
    while b'"ok"' not in received and time.monotonic() < deadline:
        try:
            received += sock.recv(4096)
        except TimeoutError:
            continue
    return received


class TestSlowAndIdleClients:
    def test_a_client_sending_its_head_slowly_is_cut_off_at_the_header_timeout(self, api_port: int) -> None:
        with connect(api_port) as sock:
            start = time.monotonic()
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n")
            closed_after = None
            for n in range(int((HEADER_TIMEOUT + SLACK + 3) / 0.2)):
                try:
                    sock.sendall(b"X-Slow-%d: 1\r\n" % n)  # never the blank line that ends the head
                except (BrokenPipeError, ConnectionResetError):
                    closed_after = time.monotonic() - start
                    break
                received, closed = read_until_closed(sock, within=0.2)
                if closed is not None:
                    assert received == b"" or received.startswith(b"HTTP/1.1 408"), received
                    closed_after = time.monotonic() - start
                    break
        assert closed_after is not None, "a slow header sender was held open"
        assert closed_after <= HEADER_TIMEOUT + SLACK

    def test_a_connection_that_sends_nothing_is_closed(self, api_port: int) -> None:
        with connect(api_port) as sock:
            received, closed = read_until_closed(sock, within=HEADER_TIMEOUT + SLACK)
        assert closed is not None and received == b""

    def test_a_kept_alive_connection_serves_again_then_is_closed_when_idle(self, api_port: int) -> None:
        with connect(api_port) as sock:
            assert healthz(sock).startswith(b"HTTP/1.1 200")
            time.sleep(HEADER_TIMEOUT / 2)
            assert healthz(sock).startswith(b"HTTP/1.1 200")  # the head deadline starts again per request
            _, closed = read_until_closed(sock, within=KEEP_ALIVE + SLACK)
        assert closed is not None


class TestBoundedHeadsAndConnections:
    def test_a_head_over_the_limit_is_refused_with_431(self, api_port: int) -> None:
        with connect(api_port) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Big: " + b"a" * (4 * MAX_HEADER_BYTES) + b"\r\n\r\n"
            )
            received, closed = read_until_closed(sock, within=5)
        assert received.startswith(b"HTTP/1.1 431"), received[:100]
        assert closed is not None

    def test_a_head_within_the_limit_is_served(self, api_port: int) -> None:
        with connect(api_port) as sock:
            sock.sendall(
                b"GET /healthz HTTP/1.1\r\nHost: gateway\r\nX-Fine: " + b"a" * (MAX_HEADER_BYTES // 2) + b"\r\n\r\n"
            )
            received, _ = read_until_closed(sock, within=1)
        assert received.startswith(b"HTTP/1.1 200"), received[:100]

    def test_connections_over_the_limit_get_503(self, api_port: int) -> None:
        held = [connect(api_port) for _ in range(LIMIT_CONCURRENCY)]
        try:
            time.sleep(0.2)
            with connect(api_port) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: gateway\r\n\r\n")
                received, _ = read_until_closed(sock, within=1)
            assert received.startswith(b"HTTP/1.1 503"), received[:100]
        finally:
            for sock in held:
                sock.close()
