"""How `video-gateway serve` runs uvicorn: our listener's connection limit and timeouts, and the head deadline
that uvicorn lacks.

uvicorn bounds concurrency (`limit_concurrency`: past it, 503 at once) and idle kept-alive connections
(`timeout_keep_alive`), but has no timeout for receiving a request: its keep-alive timer is stopped by the
first byte, so a client sending one header byte a second holds its connection (and a slot of
`limit_concurrency`) for as long as it likes, and its httptools parser (the one `uvicorn[standard]` selects)
accepts heads of any size (`h11_max_incomplete_event_size` only bounds the h11 parser). `HeadLimitedProtocol`
adds both: a request's head must arrive whole within `header_timeout_seconds` of the connection opening (or of
its first byte on a kept-alive connection), else the connection is closed (with a 408 if part of a head came),
and a head over `max_header_bytes` is answered 431 and the connection closed. Request bodies are not timed
here: uploads on slow links are legitimate, and the ingress bounds them (docs/deployment.md).

The protocol subclasses uvicorn's httptools protocol and hooks its parser callbacks (`on_message_begin`,
`on_headers_complete`): tests/integration/test_serve_limits.py runs a real server, so an upgrade of uvicorn
that changes them fails there.
"""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Final

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from app.core.config import Settings

HEAD_END: Final = b"\r\n\r\n"
REQUEST_TIMEOUT: Final = b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
HEAD_TOO_LARGE: Final = (
    b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
)


class HeadLimitedProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a deadline and a size limit on each request's head."""

    head_timeout_seconds: ClassVar[float] = 10.0
    max_head_bytes: ClassVar[int] = 16 * 1024

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_deadline: asyncio.TimerHandle | None = None
        # Bytes of the head being received so far, None while a request's body is (a head is complete).
        self._head_bytes: int | None = 0
        # The head's last 3 bytes, to find its end (a blank line) across two reads.
        self._head_tail = b""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # The first head is due from the moment of connection: a client that connects and sends nothing is
        # cut off too (uvicorn arms no timer until a first response).
        self._arm()

    def data_received(self, data: bytes) -> None:
        if self._head_bytes is not None:
            # Checked before the parser sees the bytes, which it would otherwise buffer whatever their size: the
            # head must end (CRLF CRLF) within the budget. Bytes after its end are the body's, not counted.
            budget = self.max_head_bytes - self._head_bytes
            if len(data) > budget and HEAD_END not in (self._head_tail + data[: max(budget, 0)]):
                self._refuse(HEAD_TOO_LARGE)
                return
            self._head_bytes += len(data)
            self._head_tail = (self._head_tail + data[-len(HEAD_END) :])[-(len(HEAD_END) - 1) :]
        super().data_received(data)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        # The first byte of a head; on a kept-alive connection uvicorn has just stopped its keep-alive timer.
        if self._head_deadline is None:
            self._arm()

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        self._disarm()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        # The request is in whole: what comes next on this connection is another head.
        self._head_bytes = 0
        self._head_tail = b""
        super().on_message_complete()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        self._head_deadline = self.loop.call_later(self.head_timeout_seconds, self._head_timed_out)

    def _disarm(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if self.transport.is_closing() or self.transport.get_protocol() is not self:
            return  # closed already, or handed over to another protocol (an upgrade)
        # Nothing sent yet (an idle new connection): just close, as for an idle kept-alive one.
        self._refuse(REQUEST_TIMEOUT if self._head_bytes else None)

    def _refuse(self, answer: bytes | None) -> None:
        self._disarm()
        self._head_bytes = None
        if answer is not None:
            self.transport.write(answer)
        self.transport.close()


def head_limited_protocol(*, head_timeout_seconds: float, max_head_bytes: int) -> type[HeadLimitedProtocol]:
    """`HeadLimitedProtocol` with these limits (uvicorn builds its protocol from the class alone)."""

    class Configured(HeadLimitedProtocol):
        pass

    Configured.head_timeout_seconds = head_timeout_seconds
    Configured.max_head_bytes = max_head_bytes
    return Configured


def uvicorn_options(settings: Settings, *, host: str | None = None, port: int | None = None) -> dict[str, Any]:
    """Keyword arguments of `uvicorn.run` for the API (`host`/`port` from the command line win)."""
    api = settings.api
    return {
        "host": host or api.host,
        "port": port or api.port,
        "log_level": settings.log_level.lower(),
        # The client address is the peer's: X-Forwarded-For is not trusted (docs/deployment.md says what the
        # ingress must do instead); the admin-key throttle keys on it.
        "proxy_headers": False,
        # Our own access line (app.core.access_log) leaves out query strings, where keys may hide.
        "access_log": False,
        # Keep the logging configure_logging set up (JSON or console) for uvicorn's own lines too.
        "log_config": None,
        "http": head_limited_protocol(
            head_timeout_seconds=api.header_timeout_seconds, max_head_bytes=api.max_header_bytes
        ),
        "limit_concurrency": api.limit_concurrency,
        "timeout_keep_alive": api.keep_alive_timeout_seconds,
        # Bounds the head under the h11 parser too (unused with httptools, whose heads the protocol bounds).
        "h11_max_incomplete_event_size": api.max_header_bytes,
    }
