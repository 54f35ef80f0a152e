"""The running simulator: store, lifecycle loop, render pool, webhook sender, faults and stats in one object.

`Simulator` is created by `create_simulator_app` and lives on `app.state.simulator`. Its background work
(the lifecycle tick, renders in a thread pool bounded by `max_parallel_renders`, webhook deliveries) runs
between `start()` and `stop()`: the app's lifespan calls them under uvicorn, `simulator_running(app)` does
for in-process tests, and the first API request starts them lazily if neither did (ASGITransport runs no
lifespan). The lifecycle advances on a short tick, not on polls, so renders and webhooks happen even when
nobody asks.
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
from app.simulator.delivery import WebhookSender
from app.simulator.errors import SimulatorError
from app.simulator.faults import Faults, RuntimeConfig
from app.simulator.render import RenderCancelled, RenderJob, render_assets
from app.simulator.state import VideoRecord, VideoStore, new_video_id
from app.simulator.validation import CreateParams, size_dimensions

logger = logging.getLogger(__name__)

TICK_SECONDS = 0.05
MODERATION_ERROR = {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."}
RENDER_ERROR = {"code": "internal_error", "message": "Video generation failed. Please try again."}


class Stats:
    """Counts of what the simulator received, so gateway tests can assert e.g. exactly one upstream create."""

    def __init__(self) -> None:
        self.create_requests = 0
        self.videos_created = 0
        self.renders_completed = 0
        self.requests: Counter[str] = Counter()

    def as_json(self) -> dict[str, Any]:
        return {
            "create_requests": self.create_requests,
            "videos_created": self.videos_created,
            "renders_completed": self.renders_completed,
            "requests": dict(self.requests),
        }


class Simulator:
    def __init__(self, settings: SimulatorSettings) -> None:
        self.settings = settings
        self.faults = Faults()
        self.config = self._initial_config()
        self.store = VideoStore()
        self.stats = Stats()
        secret = settings.webhook_secret.get_secret_value() if settings.webhook_secret is not None else None
        self.sender = WebhookSender(
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

    def _initial_config(self) -> RuntimeConfig:
        return RuntimeConfig(
            queue_seconds=self.settings.queue_seconds,
            render_seconds=self.settings.render_seconds,
            ttl_seconds=self.settings.ttl_seconds,
            webhook_url=self.settings.webhook_url,
            blocked_words=list(self.settings.blocked_words),
        )

    # --- start / stop ---------------------------------------------------------------------------------

    async def start(self) -> None:
        async with self._start_lock:
            if self._started:
                return
            if self.settings.data_dir is None:
                self._data_dir = Path(tempfile.mkdtemp(prefix="video-sim-"))
                self._owns_data_dir = True
            else:
                self._data_dir = self.settings.data_dir
                self._data_dir.mkdir(parents=True, exist_ok=True)
            self._executor = ThreadPoolExecutor(
                max_workers=self.settings.max_parallel_renders, thread_name_prefix="sim-render"
            )
            await self.sender.start()
            self._ticker = asyncio.create_task(self._tick_forever(), name="simulator lifecycle")
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
            for record in self.store.active():
                record.cancelled.set()
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
    async def running(self) -> AsyncIterator[Simulator]:
        await self.start()
        try:
            yield self
        finally:
            await self.stop()

    # --- API operations -------------------------------------------------------------------------------

    def create(
        self,
        params: CreateParams,
        *,
        reference_image: bytes | None = None,
        remixed_from: str | None = None,
    ) -> VideoRecord:
        lowered = params.prompt.lower()
        synthetic = self.faults.synthetic_asset_bytes
        if synthetic is None:
            synthetic = self.settings.synthetic_asset_bytes
        record = VideoRecord(
            id=new_video_id(),
            model=params.model,
            prompt=params.prompt,
            size=params.size,
            seconds=params.seconds,
            created_at=time.time(),
            remixed_from_video_id=remixed_from,
            reference_image=reference_image,
            synthetic_bytes=synthetic,
            moderation_blocked=any(word.lower() in lowered for word in self.config.blocked_words if word),
        )
        self.store.add(record)
        self.stats.videos_created += 1
        self._advance(record, time.time())  # queue_seconds=0 starts at once, without waiting for a tick
        return record

    def remix(self, source_id: str, prompt: str) -> VideoRecord:
        source = self.store.get(source_id)
        if source.status != "completed":
            raise SimulatorError(
                400,
                f"Video '{source_id}' is {source.status}; only completed videos can be remixed.",
                param="video_id",
                code="invalid_video_state",
            )
        params = CreateParams(prompt=prompt, model=source.model, seconds=source.seconds, size=source.size)
        return self.create(params, remixed_from=source.id)

    async def delete(self, video_id: str) -> VideoRecord:
        record = self.store.remove(video_id)
        await self._discard(record)
        return record

    def expire(self, video_id: str) -> VideoRecord:
        record = self.store.get(video_id)
        if record.status != "completed":
            raise SimulatorError(400, f"Video '{video_id}' is {record.status}; only completed videos expire.")
        record.expires_at = int(time.time()) - 1
        return record

    def finish_renders(self, over_seconds: float) -> int:
        """Let every video in progress complete within the next `over_seconds`, evenly spread in creation order.

        A burst on demand (the benchmarks' "1,000 videos complete within 10 s"): renders are started with a
        long `render_seconds`, their files drawn at leisure, then released together. A video whose files are
        not drawn yet still waits for them. Returns how many videos were released.
        """
        now = time.time()
        records = sorted(
            (record for record in self.store.active() if record.status == "in_progress" and record.started_at),
            key=lambda record: record.created_at,
        )
        for index, record in enumerate(records):
            assert record.started_at is not None
            record.render_seconds = now - record.started_at + over_seconds * index / max(1, len(records))
        return len(records)

    @property
    def renders_pending(self) -> int:
        """Renders whose files are still being drawn."""
        return sum(1 for task in self._renders.values() if not task.done())

    async def reset(self) -> None:
        """Forget every video, delivery, count and fault; back to the settings' configuration."""
        self.faults = Faults()
        self.config = self._initial_config()
        self.stats = Stats()
        self.sender.reset()
        for record in self.store.clear():
            await self._discard(record)

    async def _discard(self, record: VideoRecord) -> None:
        record.cancelled.set()
        task = self._renders.pop(record.id, None)
        # A render still running removes its own files when it notices the flag; otherwise remove them here.
        if (task is None or task.done()) and record.directory is not None:
            await asyncio.to_thread(shutil.rmtree, record.directory, True)

    def asset_directory(self, record: VideoRecord) -> Path:
        assert record.directory is not None, "asked for the files of an unrendered video"
        return record.directory

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick_forever(self) -> None:
        while True:
            try:
                now = time.time()
                for record in self.store.active():
                    self._advance(record, now)
                self.sender.flush_due()
            except Exception:
                # One bad record must not stop every other video's lifecycle.
                logger.exception("simulator lifecycle tick failed")
            await asyncio.sleep(TICK_SECONDS)

    def _advance(self, record: VideoRecord, now: float) -> None:
        due = record.created_at + self.config.queue_seconds
        if record.status == "queued" and self._started and now >= due:
            record.status = "in_progress"
            record.started_at = now
            record.render_seconds = self.config.render_seconds
            if not record.moderation_blocked:
                self._renders[record.id] = asyncio.create_task(self._render(record), name=f"render {record.id}")
        if record.status != "in_progress" or record.started_at is None:
            return
        if now < record.started_at + record.render_seconds:
            return
        if record.moderation_blocked:
            self._finish(record, now, error=MODERATION_ERROR)
            return
        task = self._renders.get(record.id)
        if task is None or not task.done():
            return  # the render outlasts render_seconds: stay at 99 % until the files exist
        del self._renders[record.id]
        if task.cancelled() or task.exception() is not None:
            self._finish(record, now, error=RENDER_ERROR)
        else:
            self._finish(record, now, error=None)

    def _finish(self, record: VideoRecord, now: float, *, error: dict[str, str] | None) -> None:
        record.completed_at = int(now)
        if error is None:
            record.status = "completed"
            record.expires_at = record.completed_at + int(self.config.ttl_seconds)
            self.stats.renders_completed += 1
            self.sender.publish("video.completed", record.id)
        else:
            record.status = "failed"
            record.error = dict(error)
            self.sender.publish("video.failed", record.id)

    async def _render(self, record: VideoRecord) -> None:
        assert self._executor is not None and self._data_dir is not None
        width, height = size_dimensions(record.size)
        job = RenderJob(
            prompt=record.prompt,
            width=width,
            height=height,
            seconds=int(record.seconds),
            fps=self.settings.fps,
            reference_image=record.reference_image,
            synthetic_bytes=record.synthetic_bytes,
        )
        directory = self._data_dir / record.id
        record.directory = directory
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, render_assets, job, directory, record.cancelled.is_set)
        except RenderCancelled:
            pass
        except Exception:
            logger.exception("render of %s failed", record.id)
            raise
        finally:
            if record.cancelled.is_set():
                await asyncio.to_thread(shutil.rmtree, directory, True)
