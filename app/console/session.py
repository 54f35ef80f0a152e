"""Console sessions: the signed, expiring cookie a login sets, and the per-session CSRF token of every form.

Nothing about a session is stored on the server. The cookie is `v1.<expires>.<nonce>.<mac>`, where the MAC is an
HMAC-SHA256 under a key that only the server knows (`VG_CONSOLE__SESSION_SECRET`, or one derived from the admin
key, so a new admin key ends every session). The CSRF token is a second HMAC of the same nonce under a separate
label: a page can embed it, a cross-site form cannot know it, and it dies with the session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from app.auth.keys import admin_key_of
from app.core.config import Settings

COOKIE_NAME: Final = "vg_console"
COOKIE_PATH: Final = "/console"
VERSION: Final = "v1"
# Labels keep the cookie MAC and the CSRF token apart: knowing one says nothing about the other.
SESSION_LABEL: Final = b"video-gateway console session"
CSRF_LABEL: Final = b"video-gateway console csrf"
DERIVATION_LABEL: Final = b"video-gateway console session key v1"

Clock = Callable[[], float]


@dataclass(frozen=True)
class ConsoleSession:
    nonce: str
    expires_at: int
    csrf_token: str


class SessionKeys:
    """Issues and checks session cookies and CSRF tokens for one signing key."""

    def __init__(self, signing_key: bytes, *, ttl_seconds: int, clock: Clock = time.time) -> None:
        self._key = signing_key
        self._ttl_seconds = ttl_seconds
        self._clock = clock

    @classmethod
    def from_settings(cls, settings: Settings, *, clock: Clock = time.time) -> SessionKeys | None:
        """None when no admin key is configured: then there is no console at all."""
        admin_key = admin_key_of(settings)
        if not admin_key:
            return None
        configured = settings.console.session_secret
        if configured is not None and configured.get_secret_value():
            key = hashlib.sha256(configured.get_secret_value().encode("utf-8")).digest()
        else:
            key = hmac.new(admin_key.encode("utf-8"), DERIVATION_LABEL, hashlib.sha256).digest()
        return cls(key, ttl_seconds=settings.console.session_ttl_seconds, clock=clock)

    @property
    def ttl_seconds(self) -> int:
        return self._ttl_seconds

    def _mac(self, label: bytes, message: str) -> str:
        digest = hmac.new(self._key, label + b"\x00" + message.encode("ascii"), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def issue(self) -> tuple[str, ConsoleSession]:
        """A new session: the cookie value to set, and the session it stands for."""
        nonce = secrets.token_urlsafe(18)
        expires_at = int(self._clock()) + self._ttl_seconds
        payload = f"{VERSION}.{expires_at}.{nonce}"
        return f"{payload}.{self._mac(SESSION_LABEL, payload)}", self._session(nonce, expires_at)

    def check(self, cookie: str | None) -> ConsoleSession | None:
        """The session a cookie stands for, or None when it is missing, forged, malformed or expired."""
        if not cookie or len(cookie) > 200:
            return None
        version, _, rest = cookie.partition(".")
        expires, _, rest = rest.partition(".")
        nonce, _, mac = rest.partition(".")
        if version != VERSION or not expires.isdigit() or not nonce or not mac.isascii():
            return None
        if not hmac.compare_digest(mac, self._mac(SESSION_LABEL, f"{version}.{expires}.{nonce}")):
            return None
        if int(expires) <= self._clock():
            return None
        return self._session(nonce, int(expires))

    def csrf_ok(self, session: ConsoleSession, presented: str | None) -> bool:
        return presented is not None and presented.isascii() and hmac.compare_digest(presented, session.csrf_token)

    def _session(self, nonce: str, expires_at: int) -> ConsoleSession:
        return ConsoleSession(nonce=nonce, expires_at=expires_at, csrf_token=self._mac(CSRF_LABEL, nonce))
