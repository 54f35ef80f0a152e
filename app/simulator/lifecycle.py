"""What both simulators' runtimes share: start/stop, the lifecycle tick, the bounded render pool, and reset.

`SimulatorRuntime` is the base of OpenAI's `Simulator` and of `GeminiSimulator`, which live on
`app.state.simulator`. Its background work (the lifecycle tick, renders in a thread pool bounded by
`max_parallel_renders`, webhook deliveries) runs between `start()` and `stop()`: the app's lifespan calls them
under uvicorn, `simulator_running(app)` and `gemini_simulator_running(app)` do for in-process tests, and the
first request starts them lazily if neither did (ASGITransport runs no lifespan). The lifecycle advances on a
short tick, not on polls, so renders and webhooks happen even when nobody asks.

A provider's runtime keeps what its contract decides: how a job (a video, an operation) is created, how each
tick advances it and how it ends. Here too: `RenderPool`, where jobs' files are drawn; `RuntimeConfig`, the
settings a test may change on a running simulator; and `Stats`, the counts `/_sim/stats` reports.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
import shutil
import tempfile
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, ClassVar, Literal, Protocol, Self

from pydantic import BaseModel, ConfigDict, Field

from app.core.config import SimulatorSettings
from app.simulator.render import RenderCancelled, RenderJob, render_assets
from app.simulator.sender import SignedSender, WebhookFaults

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.05
RenderOutcome = Literal["drawing", "drawn", "failed"]
# Draws a job's files into a directory, checking the callable (the job was cancelled) between frames.
Draw = Callable[[Path, Callable[[], bool]], None]


class RuntimeConfig(BaseModel):
    """The settings a test may change on a running simulator (`GET`/`PATCH /_sim/config`).

    Seeded from `SimulatorSettings`; a changed value applies to what happens next (a new ttl to jobs
    completing from now on, a new webhook_url to the next delivery attempt).
    """

    model_config = ConfigDict(extra="forbid")

    queue_seconds: float = Field(ge=0)
    render_seconds: float = Field(ge=0)
    ttl_seconds: float = Field(ge=0)
    webhook_url: str | None
    blocked_words: list[str]

    @classmethod
    def from_settings(cls, settings: SimulatorSettings, **extra: Any) -> Self:
        """The config a simulator starts (and resets) with; `extra` fills a provider's own fields."""
        return cls(
            queue_seconds=settings.queue_seconds,
            render_seconds=settings.render_seconds,
            ttl_seconds=settings.ttl_seconds,
            webhook_url=settings.webhook_url,
            blocked_words=list(settings.blocked_words),
            **extra,
        )

    def blocks(self, prompt: str) -> bool:
        """Whether the prompt contains a blocked word (any case): its job ends moderated."""
        lowered = prompt.lower()
        return any(word.lower() in lowered for word in self.blocked_words if word)


class Stats:
    """Counts of what the simulator received, so gateway tests can assert e.g. exactly one upstream create."""

    def __init__(self, created_key: str) -> None:
        # How `/_sim/stats` names the count of jobs created (`videos_created`, `operations_created`).
        self.created_key = created_key
        self.create_requests = 0
        self.created = 0
        self.renders_completed = 0
        # Requests answered 429 because a provider limit of the simulator was reached (not the fault bursts).
        self.rate_limited = 0
        self.requests: Counter[str] = Counter()

    def count_request(self, route_name: str, *, create: bool) -> None:
        self.requests[route_name] += 1
        if create:
            self.create_requests += 1

    def as_json(self) -> dict[str, Any]:
        return {
            "create_requests": self.create_requests,
            self.created_key: self.created,
            "renders_completed": self.renders_completed,
            "rate_limited": self.rate_limited,
            "requests": dict(self.requests),
        }


class BurstKnobs(Protocol):
    """The fault knobs every simulator has for bursts of 429s and 5xx (each in its provider's own shape)."""

    rate_limit_next: int
    server_error_next: int

    def burst_applies_to(self, route_name: str) -> bool: ...


Burst = Literal["rate_limit", "server_error"]


def take_burst(faults: BurstKnobs, route_name: str) -> Burst | None:
    """The 429 or 5xx a test asked for on this route (`rate_limit_next`, `server_error_next`), counted down;
    the simulator's app answers it in its provider's shape."""
    if not faults.burst_applies_to(route_name):
        return None
    if faults.rate_limit_next > 0:
        faults.rate_limit_next -= 1
        return "rate_limit"
    if faults.server_error_next > 0:
        faults.server_error_next -= 1
        return "server_error"
    return None


class Job(Protocol):
    """What the shared lifecycle reads and sets on a provider's record (a video, an operation)."""

    id: str
    created_at: float
    started_at: float | None
    # How long the render phase lasts; fixed when it starts so a later config change can't jump it.
    render_seconds: float
    directory: Path | None
    # Set on delete/reset/stop so an in-flight render stops early and its files are discarded.
    cancelled: threading.Event


class JobStore(Protocol):
    def active(self) -> Sequence[Job]:
        """The jobs not finished yet: queued or rendering."""
        ...

    def rendering(self) -> Sequence[Job]:
        """The jobs past their queue wait and not finished yet."""
        ...

    def clear(self) -> Sequence[Job]:
        """Forget every job; returns them."""
        ...


class RenderPool:
    """Where jobs' files are drawn: a data directory, and a thread pool bounded by `max_parallel_renders`.

    Open between the runtime's start and stop. Each job renders on a task of its own into `<data dir>/<job id>`;
    setting the job's `cancelled` flag stops the drawing early and has its files removed.
    """

    def __init__(self, settings: SimulatorSettings, *, name: str, data_subdir: str | None) -> None:
        self._settings = settings
        self._name = name
        self._data_subdir = data_subdir
        self._executor: ThreadPoolExecutor | None = None
        self._data_dir: Path | None = None
        self._owns_data_dir = False
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def open(self) -> None:
        if self._settings.data_dir is None:
            self._data_dir = Path(tempfile.mkdtemp(prefix=f"{self._name}-"))
            self._owns_data_dir = True
        else:
            self._data_dir = self._settings.data_dir
            if self._data_subdir is not None:
                self._data_dir /= self._data_subdir
            self._data_dir.mkdir(parents=True, exist_ok=True)
        self._executor = ThreadPoolExecutor(
            max_workers=self._settings.max_parallel_renders, thread_name_prefix=f"{self._name}-render"
        )

    async def close(self) -> None:
        """Wait out the renders (the caller has flagged their jobs cancelled), then drop a scratch directory."""
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        self._tasks.clear()
        if self._executor is not None:
            await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
            self._executor = None
        if self._owns_data_dir and self._data_dir is not None:
            await asyncio.to_thread(shutil.rmtree, self._data_dir, True)
            self._data_dir = None

    def start(self, job: Job, render: RenderJob) -> None:
        """Draw the job's files; `outcome` tells when they are done."""
        self.start_drawing(job, functools.partial(render_assets, render))

    def start_drawing(self, job: Job, draw: Draw) -> None:
        """Like `start`, with any drawing function (an edited or extended video's, `app.simulator.derive`)."""
        self._tasks[job.id] = asyncio.create_task(self._draw(job, draw), name=f"render {job.id}")

    def outcome(self, job: Job) -> RenderOutcome:
        """Whether the job's files are still being drawn, drawn, or failed; forgets the render once it is over."""
        task = self._tasks.get(job.id)
        if task is None or not task.done():
            return "drawing"
        del self._tasks[job.id]
        return "failed" if task.cancelled() or task.exception() is not None else "drawn"

    @property
    def pending(self) -> int:
        """Renders whose files are still being drawn."""
        return sum(1 for task in self._tasks.values() if not task.done())

    async def discard(self, job: Job) -> None:
        """Stop the job's render and remove its files."""
        job.cancelled.set()
        task = self._tasks.pop(job.id, None)
        # A render still running removes its own files when it notices the flag; otherwise remove them here.
        if (task is None or task.done()) and job.directory is not None:
            await asyncio.to_thread(shutil.rmtree, job.directory, True)

    async def _draw(self, job: Job, draw: Draw) -> None:
        assert self._executor is not None and self._data_dir is not None
        directory = self._data_dir / job.id
        job.directory = directory
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, draw, directory, job.cancelled.is_set)
        except RenderCancelled:
            pass
        except Exception:
            logger.exception("render of %s failed", job.id)
            raise
        finally:
            if job.cancelled.is_set():
                await asyncio.to_thread(shutil.rmtree, directory, True)


class SimulatorRuntime(abc.ABC):
    """The running part of a simulator; a provider's runtime narrows `store`, `faults`, `config` and `sender`."""

    # Names the lifecycle task, the render threads, the scratch directory and the log lines.
    label: ClassVar[str]
    # Where this simulator keeps its files under `settings.data_dir`, when it shares that with another.
    data_subdir: ClassVar[str | None] = None

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        store: JobStore,
        faults: WebhookFaults,
        sender: SignedSender[Any],
        created_key: str,
    ) -> None:
        self.settings = settings
        self.store = store
        self.faults = faults
        self.config = self._initial_config()
        self.stats = Stats(created_key)
        self.sender = sender
        self.renders = RenderPool(settings, name=self.label.replace(" ", "-"), data_subdir=self.data_subdir)
        self._started = False
        self._start_lock = asyncio.Lock()
        self._ticker: asyncio.Task[None] | None = None

    def _initial_config(self) -> RuntimeConfig:
        return RuntimeConfig.from_settings(self.settings)

    # --- start / stop ---------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            self.renders.open()
            await self.sender.start()
            self._ticker = asyncio.create_task(self._tick_forever(), name=f"{self.label} lifecycle")
            self._started = True

    async def stop(self) -> None:
        async with self._start_lock:
            if not self._started:
                return
            self._started = False
            if self._ticker is not None:
                self._ticker.cancel()
                await asyncio.gather(self._ticker, return_exceptions=True)
                self._ticker = None
            for job in self.store.active():
                job.cancelled.set()
            await self.renders.close()
            await self.sender.stop()

    async def ensure_started(self) -> None:
        if not self._started:
            await self.start()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Self]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    @contextlib.asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        """The app's lifespan: the background work runs while uvicorn serves the app."""
        async with self.running():
            yield

    # --- what every simulator offers ------------------------------------------------------------------

    def finish_renders(self, over_seconds: float) -> int:
        """Let every job rendering now finish within the next `over_seconds`, evenly spread in creation order.

        A burst on demand (the benchmarks' "1,000 videos complete within 10 s"): renders are started with a
        long `render_seconds`, their files drawn at leisure, then released together. A job whose files are
        not drawn yet still waits for them. Returns how many jobs were released.
        """
        now = time.time()
        rendering = sorted(self.store.rendering(), key=lambda job: job.created_at)
        for index, job in enumerate(rendering):
            assert job.started_at is not None
            job.render_seconds = now - job.started_at + over_seconds * index / max(1, len(rendering))
        return len(rendering)

    async def reset(self) -> None:
        """Forget every job, delivery, count and fault; back to the settings' configuration."""
        self.faults = type(self.faults)()  # every knob's default is the healthy upstream
        self.config = self._initial_config()
        self.stats = Stats(self.stats.created_key)
        self.sender.reset()
        for job in self.store.clear():
            await self.renders.discard(job)

    # --- lifecycle ------------------------------------------------------------------------------------

    @abc.abstractmethod
    async def _tick(self, now: float) -> None:
        """Advance every job that is due (a provider's runtime says how)."""

    # The steps every provider's lifecycle shares; each runtime names its own states around them.

    def _queue_wait_over(self, job: Job, now: float) -> bool:
        return self._started and now >= job.created_at + self.config.queue_seconds

    def _start_rendering(self, job: Job, now: float, render: RenderJob | None) -> None:
        """The job leaves the queue; its files are drawn in the pool when it will end with a video (`render`)."""
        job.started_at = now
        job.render_seconds = self.config.render_seconds
        if render is not None:
            self.renders.start(job, render)

    def _render_settled(self, job: Job, now: float, *, draws: bool) -> RenderOutcome | None:
        """None while the job must keep rendering (not due yet, or its files still being drawn, which may
        outlast `render_seconds`); else how its drawing ended (`drawn` also for a job that draws nothing)."""
        if job.started_at is None or now < job.started_at + job.render_seconds:
            return None
        if not draws:
            return "drawn"
        outcome = self.renders.outcome(job)
        return None if outcome == "drawing" else outcome

    async def _remove_files(self, jobs: Sequence[Job]) -> None:
        """Delete the files of jobs whose retention passed (they then answer 404, as the provider's do)."""
        for job in jobs:
            directory, job.directory = job.directory, None
            if directory is not None:
                await asyncio.to_thread(shutil.rmtree, directory, True)

    async def _tick_forever(self) -> None:
        while True:
            try:
                await self._tick(time.time())
            except Exception:
                # One bad record must not stop every other job's lifecycle.
                logger.exception("%s lifecycle tick failed", self.label)
            await asyncio.sleep(TICK_SECONDS)
