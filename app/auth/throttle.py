"""The throttle on wrong admin keys (console sign-in and `/v1/admin/*`), per client address and per process.

Callers' keys are 256 random bits; the admin key is chosen by an operator and may be guessable, so guessing it
must be slow. Each wrong admin key counts against the client's address and against one global bucket. The
first `admin_free_failures_*` are free; each failure past them locks its bucket out for
`admin_first_lockout_seconds`, then twice as long, and so on up to the bucket's cap. While a bucket is locked
out, every attempt it covers is refused with 429 and `Retry-After` before the key is compared, the right key
too: a lockout that let the right key through would still answer each guess. Refused attempts are not
counted, so retrying cannot lengthen a lockout or flood the log; each lockout is logged once, as it starts.

A right key clears its address's failures but not the global ones (an operator's script that succeeds every
few seconds must not hand a guesser spread over many addresses new free failures); a bucket forgets its
failures after `admin_forget_failures_after_seconds` without one.

The state is this process's memory: with N API replicas there are N independent throttles, and a restart
clears them (docs/runbooks.md). The client address is `request.client.host`: the server trusts no forwarded
header, so behind a proxy the ingress must connect from distinct addresses or do this itself. IPv6 clients are
grouped by their /64, the block one host usually holds. Check, compare and record run with no `await` in
between, so concurrent requests cannot slip past a lockout as it is recorded.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from app.auth.errors import AdminKeyThrottled
from app.core import retry
from app.core.config import AuthSettings

logger = logging.getLogger(__name__)

# `retry_after(GLOBAL)` asks about the global bucket only; no client address looks like this.
GLOBAL: Final = "*"
UNKNOWN_ADDRESS: Final = "unknown"
IPV6_GROUP_PREFIX: Final = 64

Clock = Callable[[], float]


def address_of(host: str | None) -> str:
    """The throttle's key for a client: its IPv4 address, its IPv6 /64, or the host as given."""
    if not host:
        return UNKNOWN_ADDRESS
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_GROUP_PREFIX), strict=False))
    return str(ip)


@dataclass
class _Bucket:
    failures: int = 0
    last_failure_at: float = -math.inf
    locked_until: float = -math.inf


class AdminKeyThrottle:
    """Failed admin-key attempts of one process. `check` before comparing a key, then `failed` or `succeeded`."""

    def __init__(self, settings: AuthSettings, *, clock: Clock = time.monotonic) -> None:
        self._settings = settings
        self._clock = clock
        # Least recently failed first, so the oldest address is the one forgotten when the table is full.
        self._addresses: OrderedDict[str, _Bucket] = OrderedDict()
        self._global = _Bucket()

    @property
    def tracked_addresses(self) -> int:
        return len(self._addresses)

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try a key again (0: now), the global lockout included."""
        now = self._clock()
        waits = [self._global.locked_until - now]
        bucket = self._addresses.get(address)
        if bucket is not None:
            waits.append(bucket.locked_until - now)
        return max(0.0, *waits)

    def check(self, address: str) -> None:
        """Raise `AdminKeyThrottled` (429, `Retry-After` in whole seconds, at least 1) while locked out."""
        wait = self.retry_after(address)
        if wait > 0:
            raise AdminKeyThrottled(max(1, math.ceil(wait)))

    def failed(self, address: str) -> None:
        """Count a wrong key from `address` (one that `check` let through); may start a lockout, logged once."""
        now = self._clock()
        settings = self._settings
        bucket = self._addresses.pop(address, None) or _Bucket()
        self._addresses[address] = bucket
        while len(self._addresses) > settings.admin_tracked_addresses:
            self._addresses.popitem(last=False)
        self._count(
            bucket,
            now,
            free=settings.admin_free_failures_per_address,
            cap=settings.admin_max_lockout_seconds_per_address,
            who=f"from {address}",
        )
        self._count(
            self._global,
            now,
            free=settings.admin_free_failures_global,
            cap=settings.admin_max_lockout_seconds_global,
            who="from every address together",
        )

    def succeeded(self, address: str) -> None:
        """The right key from `address`: its failures are forgotten (the global count stays)."""
        self._addresses.pop(address, None)

    def _count(self, bucket: _Bucket, now: float, *, free: int, cap: float, who: str) -> None:
        if now - bucket.last_failure_at >= self._settings.admin_forget_failures_after_seconds:
            bucket.failures = 0
        bucket.failures += 1
        bucket.last_failure_at = now
        beyond = bucket.failures - free
        if beyond <= 0:
            return
        # A failure is only ever counted while its buckets are not locked out, so each one past the free ones
        # starts a new lockout: logging here logs every lockout exactly once.
        seconds = retry.capped_exponential(beyond - 1, base=self._settings.admin_first_lockout_seconds, cap=cap)
        bucket.locked_until = now + seconds
        scope = "every address" if bucket is self._global else "this address"
        logger.warning(
            "admin key lockout: %d wrong admin keys %s; every attempt from %s is refused for %g s",
            bucket.failures,
            who,
            scope,
            seconds,
        )
