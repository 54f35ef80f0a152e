"""Fixtures shared by the unit tests."""

from __future__ import annotations

import ipaddress

import pytest

from app.callbacks import destinations
from app.callbacks.destinations import IPAddress


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name -> the addresses the (patched) destination guard's resolver answers; unknown names fail like
    NXDOMAIN. Shared by the callback and image-URL guard tests."""
    answers: dict[str, list[str]] = {}

    def resolve(host: str) -> list[IPAddress]:
        if host not in answers:
            raise OSError("name not known")
        return [ipaddress.ip_address(address) for address in answers[host]]

    monkeypatch.setattr(destinations, "resolve", resolve)
    return answers
