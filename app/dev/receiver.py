"""`make run`'s callback receiver: a tiny HTTP server on 127.0.0.1:8102 that verifies every delivery.

It stands for a caller's service: each POST is checked with the `standardwebhooks` library under the dev
caller's callback secret (`GET /v1/callbacks/secret`) exactly as a caller would, `Webhook(secret).verify(body,
headers)`; a verified event is answered 204, appended to `.devstack/logs/callbacks.log` and reported, anything
else is refused 401 (bad or missing signature) or 400 (not a JSON event), which the gateway retries on its
schedule. It runs in a thread of `video-gateway dev` for as long as the stack serves; `VG_DEV__RECEIVER_PORT`
moves it off 8102.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from standardwebhooks import Webhook

from app.core.config import DevSettings

DEFAULT_PORT = DevSettings().receiver_port
CALLBACK_PATH = "/callbacks"
# Events are a few hundred bytes; anything far larger is not one of ours.
MAX_BODY_BYTES = 1024 * 1024


class BadDelivery(Exception):
    """A delivery the receiver refuses; `status` is the HTTP answer."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


@dataclass(frozen=True)
class ReceivedCallback:
    type: str
    video_id: str | None
    webhook_id: str
    received_at: float


class CallbackReceiver:
    """Start with `start()`, stop with `stop()`; `url` is what to pass as `callback_url`.

    `refresh_secret`, when given, is asked for the current secret once when a signature does not verify (the
    caller may have rotated it since the receiver started).
    """

    def __init__(
        self,
        secret: str,
        *,
        log_path: Path,
        host: str = "127.0.0.1",
        port: int = DEFAULT_PORT,
        on_event: Callable[[ReceivedCallback], None] | None = None,
        refresh_secret: Callable[[], str] | None = None,
    ) -> None:
        self.secret = secret
        self.log_path = log_path
        self.host = host
        self.port = port
        self.on_event = on_event
        self.refresh_secret = refresh_secret
        self.events: list[ReceivedCallback] = []
        self._changed = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}{CALLBACK_PATH}"

    def start(self) -> CallbackReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "make-run-callbacks/1.0"

            def do_POST(self) -> None:
                if self.path.split("?", 1)[0] != CALLBACK_PATH:
                    self._answer(404, "not found")
                    return
                try:
                    length = int(self.headers.get("content-length") or "0")
                except ValueError:
                    length = -1
                if length < 0 or length > MAX_BODY_BYTES:
                    self._answer(400, "bad content-length")
                    return
                body = self.rfile.read(length)
                headers = {name.lower(): value for name, value in self.headers.items()}
                try:
                    receiver.accept(body, headers)
                except BadDelivery as refused:
                    self._answer(refused.status, str(refused))
                    return
                self.send_response(204)
                self.send_header("content-length", "0")
                self.end_headers()

            def _answer(self, status: int, reason: str) -> None:
                payload = reason.encode("utf-8")
                self.send_response(status)
                self.send_header("content-type", "text/plain; charset=utf-8")
                self.send_header("content-length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # every verified event is logged by the receiver; nothing goes to the terminal

        self._server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, name="callback-receiver", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def verify(self, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        """The event, if its Standard Webhooks signature verifies under the secret; BadDelivery otherwise."""
        try:
            return self._verify_with(self.secret, body, headers)
        except BadDelivery as exc:
            refused = exc
        if refused.status != 401 or self.refresh_secret is None:
            raise refused
        try:
            current = self.refresh_secret()
        except Exception:
            raise refused from None
        if current == self.secret:
            raise refused
        self.secret = current
        return self._verify_with(current, body, headers)

    @staticmethod
    def _verify_with(secret: str, body: bytes, headers: dict[str, str]) -> dict[str, Any]:
        try:
            Webhook(secret).verify(body, headers, json_parse=False)
        except Exception as exc:
            raise BadDelivery(401, f"signature not verified: {exc}") from None
        try:
            event = json.loads(body)
        except ValueError:
            raise BadDelivery(400, "the body is not JSON") from None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            raise BadDelivery(400, "the body is not an event")
        return event

    def accept(self, body: bytes, headers: dict[str, str]) -> ReceivedCallback:
        event = self.verify(body, headers)
        data = event.get("data")
        video_id = data.get("id") if isinstance(data, dict) and isinstance(data.get("id"), str) else None
        received = ReceivedCallback(
            type=event["type"], video_id=video_id, webhook_id=headers.get("webhook-id", ""), received_at=time.time()
        )
        self._record(received)
        return received

    def _record(self, received: ReceivedCallback) -> None:
        stamp = datetime.fromtimestamp(received.received_at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        line = f"{stamp} {received.type} {received.video_id or '-'} webhook-id={received.webhook_id} verified\n"
        with self._changed:
            self.log_path.parent.mkdir(parents=True, exist_ok=True)
            with self.log_path.open("a", encoding="utf-8") as log:
                log.write(line)
            self.events.append(received)
            # Reported before the waiting thread is woken: it prints `make run`'s last lines as soon as it wakes,
            # and this note must come before them.
            if self.on_event is not None:
                self.on_event(received)
            self._changed.notify_all()

    def wait_for(self, video_id: str, types: tuple[str, ...], *, timeout: float) -> ReceivedCallback | None:
        """The first verified event of one of `types` for `video_id`, waiting up to `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                for received in self.events:
                    if received.video_id == video_id and received.type in types:
                        return received
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._changed.wait(timeout=min(remaining, 0.5))
