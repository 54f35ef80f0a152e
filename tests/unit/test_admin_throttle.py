"""The admin-key throttle (defect 5): free failures, then lockouts that double up to a cap, per address and for
the whole process; a success clears its address; quiet time forgets; each lockout is logged once."""

from __future__ import annotations

import logging

import pytest

from app.auth.errors import AdminKeyThrottled
from app.auth.throttle import GLOBAL, AdminKeyThrottle, address_of
from app.core.config import AuthSettings


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(clock: Clock, **fields: float) -> AdminKeyThrottle:
    settings = AuthSettings.model_validate(
        {
            "admin_free_failures_per_address": 3,
            "admin_free_failures_global": 50,
            "admin_first_lockout_seconds": 1.0,
            "admin_max_lockout_seconds_per_address": 8.0,
            "admin_max_lockout_seconds_global": 4.0,
            "admin_forget_failures_after_seconds": 600.0,
            **fields,
        }
    )
    return AdminKeyThrottle(settings, clock=clock)


def wait_out(throttle: AdminKeyThrottle, clock: Clock, address: str) -> float:
    waited = throttle.retry_after(address)
    clock.now += waited
    return waited


class TestPerAddress:
    def test_free_failures_then_lockouts_that_double_up_to_the_cap(self) -> None:
        clock = Clock()
        throttle = make(clock)
        lockouts = []
        for _ in range(8):
            throttle.check("192.0.2.1")  # never locked when a failure is recorded: it was waited out
            throttle.failed("192.0.2.1")
            lockouts.append(wait_out(throttle, clock, "192.0.2.1"))
        assert lockouts == [0, 0, 0, 1, 2, 4, 8, 8]

    def test_while_locked_every_attempt_is_refused_with_retry_after(self) -> None:
        clock = Clock()
        throttle = make(clock, admin_first_lockout_seconds=30.0, admin_max_lockout_seconds_per_address=60.0)
        for _ in range(4):
            throttle.failed("192.0.2.1")
        clock.now += 10.2
        with pytest.raises(AdminKeyThrottled) as refused:
            throttle.check("192.0.2.1")
        assert refused.value.status_code == 429
        assert refused.value.headers["Retry-After"] == "20"  # 19.8 s left, rounded up
        assert refused.value.body()["error"]["code"] == "too_many_failed_attempts"
        throttle.check("192.0.2.2")  # another address is not affected

    def test_a_success_clears_the_address(self) -> None:
        clock = Clock()
        throttle = make(clock)
        for _ in range(3):
            throttle.failed("192.0.2.1")
        throttle.succeeded("192.0.2.1")
        for _ in range(3):
            throttle.failed("192.0.2.1")
        assert throttle.retry_after("192.0.2.1") == 0

    def test_quiet_time_forgets_failures(self) -> None:
        clock = Clock()
        throttle = make(clock)
        for _ in range(3):
            throttle.failed("192.0.2.1")
        clock.now += 600
        throttle.failed("192.0.2.1")
        assert throttle.retry_after("192.0.2.1") == 0

    def test_memory_is_bounded(self) -> None:
        clock = Clock()
        throttle = make(clock, admin_tracked_addresses=3)
        for host in range(10):
            throttle.failed(f"192.0.2.{host}")
        assert throttle.tracked_addresses == 3


class TestGlobal:
    def test_failures_from_many_addresses_lock_everyone(self) -> None:
        clock = Clock()
        throttle = make(clock, admin_free_failures_global=5)
        for host in range(6):
            throttle.failed(f"198.51.100.{host}")
        assert throttle.retry_after(GLOBAL) == 1.0
        with pytest.raises(AdminKeyThrottled):
            throttle.check("203.0.113.99")  # an address that never failed: even the right key must wait

    def test_a_success_does_not_clear_the_global_count(self) -> None:
        clock = Clock()
        throttle = make(clock, admin_free_failures_global=5)
        for host in range(5):
            throttle.failed(f"198.51.100.{host}")
        throttle.succeeded("203.0.113.99")
        throttle.failed("198.51.100.200")
        assert throttle.retry_after("203.0.113.99") == 1.0

    def test_the_global_lockout_has_its_own_cap(self) -> None:
        clock = Clock()
        throttle = make(clock, admin_free_failures_global=0, admin_free_failures_per_address=100)
        waits = []
        for host in range(5):
            throttle.failed(f"198.51.100.{host}")
            waits.append(wait_out(throttle, clock, "203.0.113.99"))
        assert waits == [1, 2, 4, 4, 4]


class TestLogging:
    def test_each_lockout_is_logged_once_without_the_key(self, caplog: pytest.LogCaptureFixture) -> None:
        clock = Clock()
        throttle = make(clock)
        caplog.set_level(logging.INFO, logger="app.auth.throttle")
        for _ in range(4):
            throttle.failed("192.0.2.1")
        for _ in range(20):  # refused while locked: not checked, not counted, not logged again
            with pytest.raises(AdminKeyThrottled):
                throttle.check("192.0.2.1")
        lockouts = [r for r in caplog.records if "lockout" in r.getMessage()]
        assert len(lockouts) == 1
        assert "192.0.2.1" in lockouts[0].getMessage()
        wait_out(throttle, clock, "192.0.2.1")
        throttle.failed("192.0.2.1")
        assert len([r for r in caplog.records if "lockout" in r.getMessage()]) == 2


class TestAddresses:
    def test_ipv6_clients_are_grouped_by_their_slash_64(self) -> None:
        assert address_of("2001:db8:1:2::5") == address_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
        assert address_of("2001:db8:1:3::5") != address_of("2001:db8:1:2::5")

    def test_ipv4_and_unknown_clients(self) -> None:
        assert address_of("192.0.2.1") == "192.0.2.1"
        assert address_of(None) == "unknown"
        assert address_of("testclient") == "testclient"
