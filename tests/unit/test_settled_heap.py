"""`serve` freezes the start-up heap before the server runs (app/core/heap.py `settle_heap`): full collections
then skip it, which is what kept the API's p99 down under load (docs/benchmarks.md)."""

from __future__ import annotations

import gc
from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from app import cli


def test_serve_freezes_the_heap_before_the_server_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    frozen_at_start: list[int] = []

    def run(app: Any, **options: Any) -> None:
        frozen_at_start.append(gc.get_freeze_count())

    monkeypatch.setattr(uvicorn, "run", run)
    monkeypatch.setenv("VG_MODE", "dev")
    monkeypatch.setenv("VG_WEBHOOKS__SECRETS", "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
    gc.unfreeze()
    try:
        result = CliRunner().invoke(cli.cli, ["serve"])
    finally:
        gc.unfreeze()  # the test process builds many apps: nothing of it may stay frozen
    assert result.exit_code == 0, result.output
    assert frozen_at_start and frozen_at_start[0] > 0
