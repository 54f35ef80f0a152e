"""The running Gemini simulator: operations, lifecycle loop, render pool, webhook sender, faults and stats.

`GeminiSimulator` lives on `app.state.simulator`. Like the OpenAI simulator's runtime, its background work
(the lifecycle tick, renders in a thread pool bounded by `max_parallel_renders`, webhook deliveries) runs
between `start()` and `stop()`: the app's lifespan calls them under uvicorn, `gemini_simulator_running(app)`
does for in-process tests, and the first request starts them lazily if neither did. An operation waits
`queue_seconds`, then runs for `render_seconds` (longer if drawing the MP4 takes longer), then is done with
the ending chosen at create time. Files are removed `ttl_seconds` after completion.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from app.core.config import SimulatorSettings
from app.simulator.gemini.errors import invalid_argument
from app.simulator.gemini.faults import Ending, GeminiConfig, GeminiFaults
from app.simulator.gemini.state import Operation, OperationStore, download_uri, new_resource_id
from app.simulator.gemini.validation import CreateRequest
from app.simulator.gemini.webhooks import GeminiWebhookSender
from app.simulator.render import RenderCancelled, RenderJob, render_assets

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.05
# A prompt containing this (any case) ends its operation with `error` (code 13, INTERNAL).
ERROR_MARKER = "sim:error"


class GeminiStats:
    """Counts of what the simulator received, so gateway tests can assert e.g. exactly one upstream create."""

    def __init__(self) -> None:
        self.create_requests = 0
        self.operations_created = 0
        self.renders_completed = 0
        self.requests: Counter[str] = Counter()

    def as_json(self) -> dict[str, Any]:
        return {
            "create_requests": self.create_requests,
            "operations_created": self.operations_created,
            "renders_completed": self.renders_completed,
            "requests": dict(self.requests),
        }


class GeminiSimulator:
    def __init__(self, settings: SimulatorSettings, *, public_base_url: str | None = None) -> None:
        self.settings = settings
        self._public_base_url = public_base_url
        self.faults = GeminiFaults()
        self.config = self._initial_config()
        self.store = OperationStore()
        self.stats = GeminiStats()
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else None
        self.sender = GeminiWebhookSender(
            secret=secret,
            max_attempts=settings.webhook_max_attempts,
            retry_base_seconds=settings.webhook_retry_base_seconds,
            url=lambda: self.config.webhook_url,
            faults=lambda: self.faults,
        )
        self._started = False
        self._start_lock = asyncio.Lock()
        self._executor: ThreadPoolExecutor | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._renders: dict[str, asyncio.Task[None]] = {}
        self._data_dir: Path | None = None
        self._owns_data_dir = False

    def _initial_config(self) -> GeminiConfig:
        return GeminiConfig(
            queue_seconds=self.settings.queue_seconds,
            render_seconds=self.settings.render_seconds,
            ttl_seconds=self.settings.ttl_seconds,
            webhook_url=self.settings.webhook_url,
            blocked_words=list(self.settings.blocked_words),
            public_base_url=self._public_base_url,
        )

    # --- start / stop ---------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self.settings.data_dir is None:
                self._data_dir = Path(tempfile.mkdtemp(prefix="gemini-sim-"))
                self._owns_data_dir = True
            else:
                self._data_dir = self.settings.data_dir / "gemini"
                self._data_dir.mkdir(parents=True, exist_ok=True)
            self._executor = ThreadPoolExecutor(
                max_workers=self.settings.max_parallel_renders, thread_name_prefix="gemini-sim-render"
            )
            await self.sender.start()
            self._ticker = asyncio.create_task(self._tick_forever(), name="gemini simulator lifecycle")
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
            for operation in self.store.active():
                operation.cancelled.set()
            await asyncio.gather(*self._renders.values(), return_exceptions=True)
            self._renders.clear()
            if self._executor is not None:
                await asyncio.to_thread(self._executor.shutdown, True, cancel_futures=True)
                self._executor = None
            await self.sender.stop()
            if self._owns_data_dir and self._data_dir is not None:
                await asyncio.to_thread(shutil.rmtree, self._data_dir, True)
                self._data_dir = None

    async def ensure_started(self) -> None:
        if not self._started:
            await self.start()

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[GeminiSimulator]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    # --- operations -----------------------------------------------------------------------------------

    def base_url(self, request_base_url: str) -> str:
        """The base of sample URIs: the configured public base, else the given request's."""
        return self.config.public_base_url or request_base_url

    def create(self, request: CreateRequest, *, base_url: str) -> Operation:
        width, height = request.dimensions
        synthetic = self.faults.synthetic_asset_bytes
        if synthetic is None:
            synthetic = self.settings.synthetic_asset_bytes
        operation = Operation(
            id=new_resource_id(),
            model=request.model,
            prompt=request.prompt,
            width=width,
            height=height,
            duration_seconds=request.duration_seconds,
            ending=self._choose_ending(request.prompt),
            created_at=time.time(),
            create_base_url=base_url,
            reference_image=request.image,
            synthetic_bytes=synthetic,
        )
        self.store.add(operation)
        self.stats.operations_created += 1
        self._advance(operation, time.time())  # queue_seconds=0 starts at once, without waiting for a tick
        return operation

    def _choose_ending(self, prompt: str) -> Ending:
        forced = self.faults.take_forced_ending()
        if forced is not None:
            return forced
        lowered = prompt.lower()
        if any(word.lower() in lowered for word in self.config.blocked_words if word):
            return "moderation"
        if ERROR_MARKER in lowered:
            return "error"
        return "sample"

    def expire(self, operation_id: str) -> Operation:
        """Make a finished operation's file gone now (its files are removed on the next tick)."""
        operation = self.store.by_id(operation_id)
        if not operation.has_file:
            raise invalid_argument(f"Operation {operation.name} has no generated file to expire.")
        operation.expires_at = time.time() - 1
        return operation

    def finish_renders(self, over_seconds: float) -> int:
        """Let every running operation finish within the next `over_seconds`, evenly spread in creation order.

        A burst on demand: renders started with a long `render_seconds` are released together. An operation
        whose MP4 is not drawn yet still waits for it. Returns how many operations were released.
        """
        now = time.time()
        running = sorted(
            (op for op in self.store.active() if op.phase == "running" and op.started_at is not None),
            key=lambda op: op.created_at,
        )
        for index, operation in enumerate(running):
            assert operation.started_at is not None
            operation.render_seconds = now - operation.started_at + over_seconds * index / max(1, len(running))
        return len(running)

    @property
    def renders_pending(self) -> int:
        """Renders whose files are still being drawn."""
        return sum(1 for task in self._renders.values() if not task.done())

    async def reset(self) -> None:
        """Forget every operation, delivery, count and fault; back to the settings' configuration."""
        self.faults = GeminiFaults()
        self.config = self._initial_config()
        self.stats = GeminiStats()
        self.sender.reset()
        for operation in self.store.clear():
            operation.cancelled.set()
            task = self._renders.pop(operation.id, None)
            # A render still running removes its own files when it notices the flag.
            if (task is None or task.done()) and operation.directory is not None:
                await asyncio.to_thread(shutil.rmtree, operation.directory, True)

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            try:
                now = time.time()
                for operation in self.store.active():
                    self._advance(operation, now)
                for operation in self.store.expired_with_files(now):
                    directory, operation.directory = operation.directory, None
                    if directory is not None:
                        await asyncio.to_thread(shutil.rmtree, directory, True)
            except Exception:
                # One bad record must not stop every other operation's lifecycle.
                logger.exception("gemini simulator lifecycle tick failed")
            await asyncio.sleep(TICK_SECONDS)

    def _advance(self, operation: Operation, now: float) -> None:
        if operation.phase == "queued" and self._started and now >= operation.created_at + self.config.queue_seconds:
            operation.phase = "running"
            operation.started_at = now
            operation.render_seconds = self.config.render_seconds
            if operation.ending == "sample":
                render = asyncio.create_task(self._render(operation), name=f"render {operation.id}")
                self._renders[operation.id] = render
        if operation.phase != "running" or operation.started_at is None:
            return
        if now < operation.started_at + operation.render_seconds:
            return
        if operation.ending == "sample":
            task = self._renders.get(operation.id)
            if task is None or not task.done():
                return  # the render outlasts render_seconds: keep running until the file exists
            del self._renders[operation.id]
            if task.cancelled() or task.exception() is not None:
                operation.ending = "error"
        self._finish(operation, now)

    def _finish(self, operation: Operation, now: float) -> None:
        operation.phase = "done"
        operation.completed_at = now
        if operation.ending != "sample":
            return  # Google documents no failure event: errors and RAI filters are only seen by polling
        operation.expires_at = now + self.config.ttl_seconds
        self.stats.renders_completed += 1
        uri = download_uri(self.base_url(operation.create_base_url), operation.file_id)
        self.sender.publish_generated(operation.name, uri)

    async def _render(self, operation: Operation) -> None:
        assert self._executor is not None and self._data_dir is not None
        job = RenderJob(
            prompt=operation.prompt,
            width=operation.width,
            height=operation.height,
            seconds=operation.duration_seconds,
            fps=self.settings.fps,
            reference_image=operation.reference_image,
            synthetic_bytes=operation.synthetic_bytes,
        )
        directory = self._data_dir / operation.id
        operation.directory = directory
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, render_assets, job, directory, operation.cancelled.is_set)
        except RenderCancelled:
            pass
        except Exception:
            logger.exception("render of %s failed", operation.name)
            raise
        finally:
            if operation.cancelled.is_set():
                await asyncio.to_thread(shutil.rmtree, directory, True)
