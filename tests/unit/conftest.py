"""Fixtures shared by the unit tests."""

from __future__ import annotations

import ipaddress

import pytest

from app.core import outbound_urls
from app.core.outbound_urls import IPAddress


@pytest.fixture
def resolver(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Host name -> the addresses the (patched) destination guard's resolver answers; unknown names fail like
    NXDOMAIN. Shared by the callback and image-URL guard tests."""
    answers: dict[str, list[str]] = {}

    def resolve(host: str) -> list[IPAddress]:
        if host not in answers:
            raise OSError("name not known")
        return [ipaddress.ip_address(address) for address in answers[host]]

    monkeypatch.setattr(outbound_urls, "resolve", resolve)
    return answers
