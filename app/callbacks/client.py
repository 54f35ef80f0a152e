"""The HTTP side of a callback: one signed POST to a pinned address, never following a redirect.

The request goes to the IP the destination check approved (`outbound_urls.pin`), with the `Host` header and
the TLS server name (SNI, and so certificate verification) set to the original host name; nothing resolves
the name again between the check and the connection. No proxy from the environment is used (it would
resolve on our behalf), no connection is kept alive (a pooled connection is keyed by IP and must not carry
another name's request), and the answer's body is never read: the status decides.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import httpx

from app.core.outbound_urls import PinnedTarget
from app.models import AttemptOutcome

USER_AGENT = "video-gateway-callbacks/1.0"


@dataclass(frozen=True)
class SendResult:
    outcome: AttemptOutcome
    status_code: int | None = None
    error: str | None = None
    duration_ms: int = 0

    @property
    def delivered(self) -> bool:
        return self.outcome is AttemptOutcome.DELIVERED


class CallbackClient:
    """One per batch of deliveries; `async with` closes it."""

    def __init__(self, *, timeout_seconds: float, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._timeout = timeout_seconds
        self._http = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_seconds),
            follow_redirects=False,
            trust_env=False,
            limits=httpx.Limits(max_keepalive_connections=0),
            transport=transport,
        )

    async def __aenter__(self) -> CallbackClient:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self._http.aclose()

    async def post(self, target: PinnedTarget, *, body: bytes, headers: dict[str, str]) -> SendResult:
        request = self._http.build_request(
            "POST",
            target.url,
            content=body,
            headers={
                **headers,
                "host": target.host_header,
                "content-type": "application/json",
                "user-agent": USER_AGENT,
            },
            extensions={"sni_hostname": target.sni_hostname} if target.sni_hostname else None,
        )
        started = time.monotonic()
        try:
            # httpx's timeout bounds each phase; this bounds the whole attempt.
            async with asyncio.timeout(self._timeout):
                response = await self._http.send(request, stream=True)
                await response.aclose()
        except (TimeoutError, httpx.TimeoutException):
            return SendResult(
                AttemptOutcome.TIMEOUT, error=f"no answer within {self._timeout:g} s", duration_ms=_took(started)
            )
        except httpx.HTTPError as exc:
            return SendResult(AttemptOutcome.NETWORK_ERROR, error=type(exc).__name__, duration_ms=_took(started))
        status = response.status_code
        if 200 <= status < 300:
            return SendResult(AttemptOutcome.DELIVERED, status_code=status, duration_ms=_took(started))
        if 300 <= status < 400:
            return SendResult(
                AttemptOutcome.REDIRECT,
                status_code=status,
                error=f"answered {status} (a redirect; redirects are not followed)",
                duration_ms=_took(started),
            )
        return SendResult(
            AttemptOutcome.HTTP_ERROR, status_code=status, error=f"answered {status}", duration_ms=_took(started)
        )


def _took(started: float) -> int:
    return int((time.monotonic() - started) * 1000)
