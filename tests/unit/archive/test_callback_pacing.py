"""The worker's callback sender: while the outbox had something it is looked at again on the next tick; once a
look found it empty, not again before the poll interval (a burst's ticks come with every finished job, and each
look is a transaction), and then at once."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from app.archive.queue import ClaimedJob
from app.archive.worker import Worker
from app.callbacks import delivery as callbacks_delivery
from tests.support.settings import make_settings
from tests.support.worker import worker_settings

POLL = 0.2


class Outbox:
    def __init__(self, batches: list[int]) -> None:
        self.batches = batches  # what each look sends; 0 once they run out
        self.looks = 0

    async def deliver_due(self, context: object) -> int:
        self.looks += 1
        return self.batches.pop(0) if self.batches else 0


def idle_worker(monkeypatch: pytest.MonkeyPatch, outbox: Outbox) -> Worker:
    """A worker whose only work is the callback sender: no jobs to claim, no periodic passes."""
    monkeypatch.setattr(callbacks_delivery, "deliver_due", outbox.deliver_due)
    settings = make_settings("postgresql+asyncpg://unused/none").model_copy(
        update={"worker": worker_settings(poll_interval_seconds=POLL)}
    )
    context: Any = SimpleNamespace(settings=settings)  # nothing here reaches the database or S3
    worker = Worker(context)
    worker._next_maintenance = worker._next_reconcile = worker._next_janitor = float("inf")
    worker._next_audit = worker._next_prune = float("inf")

    async def no_jobs(limit: int) -> list[ClaimedJob]:
        return []

    monkeypatch.setattr(worker, "_claim", no_jobs)
    return worker


async def ticks(worker: Worker, count: int) -> None:
    for _ in range(count):
        await worker._tick(wait=False)
        await asyncio.sleep(0)  # the sender's pass runs in its own task


async def test_an_empty_outbox_is_looked_at_once_per_poll_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = Outbox([])
    worker = idle_worker(monkeypatch, outbox)
    await ticks(worker, 50)
    assert outbox.looks == 1
    await asyncio.sleep(POLL * 1.2)
    await ticks(worker, 50)
    assert outbox.looks == 2


async def test_while_callbacks_are_sent_the_next_tick_looks_again(monkeypatch: pytest.MonkeyPatch) -> None:
    outbox = Outbox([5, 5, 5])
    worker = idle_worker(monkeypatch, outbox)
    await ticks(worker, 20)
    assert outbox.looks == 4  # three batches, then the empty look that pauses it
