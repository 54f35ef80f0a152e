"""Fixtures for driving the simulator in-process: over ASGITransport, or on a real uvicorn socket, and a webhook
receiver on a real socket (helpers: tests/support/simulator.py)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from tests.support.simulator import (
    WEBHOOK_SECRET,
    Receiver,
    SimulatorFactory,
    asgi_simulator,
    create_video,
    fast_settings,
    served,
    served_simulator,
    wait_for_status,
)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    receiver = Receiver()
    async with served(receiver) as base_url:
        receiver.url = f"{base_url}/hooks"
        yield receiver


@pytest.fixture
def asgi_sim() -> SimulatorFactory:
    """`async with asgi_sim(**settings) as client`: the simulator in-process over ASGITransport."""
    return lambda **overrides: asgi_simulator(fast_settings(**overrides))


@pytest.fixture
def real_sim() -> SimulatorFactory:
    """`async with real_sim(**settings) as client`: the simulator on a real loopback socket (uvicorn)."""
    return lambda **overrides: served_simulator(fast_settings(**overrides))


@pytest.fixture
def poll() -> Callable[..., Awaitable[dict[str, Any]]]:
    return wait_for_status


@pytest.fixture
def create() -> Callable[..., Awaitable[dict[str, Any]]]:
    return create_video


@pytest.fixture
def webhook_secret() -> str:
    return WEBHOOK_SECRET
