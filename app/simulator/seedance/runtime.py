"""The running Seedance simulator: tasks, their endings, cancel and delete, and the expiry of their files.

`SeedanceSimulator` lives on `app.state.simulator`. Its start/stop, lifecycle tick, render pool and reset are
`app.simulator.lifecycle.SimulatorRuntime`'s, as for the other simulators; this module decides what ModelArk's
contract does with a task: `queued` for `queue_seconds`, `running` for `render_seconds` (longer if drawing the
MP4 takes longer), then `succeeded`, `failed` or `expired` as chosen at create time; a task still unfinished
`execution_expires_after` seconds after its create is `expired`. Every status change is POSTed to the task's
`callback_url`. DELETE cancels a queued task (`cancelled`, kept), deletes a finished one's record (and file),
and refuses a running one. A succeeded task's URL stops working `ttl_seconds` after completion (Ark: 24 h)
and its file is removed then; the record stays.
"""

from __future__ import annotations

import secrets
import time

import httpx

from app.core.config import SimulatorSettings
from app.simulator.lifecycle import SimulatorRuntime
from app.simulator.render import RenderJob
from app.simulator.seedance.callbacks import CallbackSender
from app.simulator.seedance.errors import invalid_parameter, task_running
from app.simulator.seedance.faults import Ending, SeedanceConfig, SeedanceFaults
from app.simulator.seedance.state import TERMINAL, Task, TaskStore, new_task_id, signed_query
from app.simulator.seedance.validation import CreateRequest

# A prompt containing this (any case) ends its task `failed` with InternalServiceError.
ERROR_MARKER = "sim:error"


class SeedanceSimulator(SimulatorRuntime):
    label = "seedance simulator"
    data_subdir = "seedance"
    store: TaskStore
    faults: SeedanceFaults
    config: SeedanceConfig
    sender: CallbackSender

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        files_base_url: str | None = None,
        callback_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._files_base_url = files_base_url  # set first: the base's __init__ asks `_initial_config`
        # Tasks that expired while their render may hold files; the next tick stops and removes them.
        self._to_discard: list[Task] = []
        super().__init__(
            settings,
            store=TaskStore(),
            faults=SeedanceFaults(),
            sender=CallbackSender(
                settings,
                override=lambda: self.config.webhook_url,
                faults=lambda: self.faults,
                transport=callback_transport,
            ),
            created_key="tasks_created",
        )

    def _initial_config(self) -> SeedanceConfig:
        return SeedanceConfig.from_settings(self.settings, files_base_url=self._files_base_url)

    # --- tasks ----------------------------------------------------------------------------------------

    def files_base(self, task: Task) -> str:
        """The base of a task's video URL: the configured file host, else the host its create came to."""
        return self.config.files_base_url or task.create_base_url

    def task_json(self, task: Task) -> dict[str, object]:
        return task.as_json(self.files_base(task))

    def create(self, request: CreateRequest, *, base_url: str) -> Task:
        synthetic = self.faults.synthetic_asset_bytes
        if synthetic is None:
            synthetic = self.settings.synthetic_asset_bytes
        now = time.time()
        task_id = new_task_id(now)
        while self.store.contains(task_id):
            task_id = new_task_id(now)
        task = Task(
            id=task_id,
            model=request.model,
            prompt=request.prompt,
            ratio=request.ratio,
            resolution=request.resolution,
            width=request.width,
            height=request.height,
            duration=request.duration,
            # Ark reports the seed it used: a random one when asked for -1.
            seed=request.seed if request.seed != -1 else secrets.randbelow(2**31),
            service_tier=request.service_tier,
            execution_expires_after=request.execution_expires_after,
            generate_audio=request.generate_audio,
            ending=self._choose_ending(request.prompt),
            created_at=now,
            updated_at=now,
            create_base_url=base_url,
            callback_url=request.callback_url,
            reference_image=request.image,
            synthetic_bytes=synthetic,
            fps=self.settings.fps,
        )
        self.store.add(task)
        self.stats.created += 1
        self._notify(task)
        self._advance(task, now)  # queue_seconds=0 starts at once, without waiting for a tick
        return task

    def _choose_ending(self, prompt: str) -> Ending:
        forced = self.faults.take_forced_ending()
        if forced is not None:
            return forced
        if self.config.blocks(prompt):
            return "moderation"
        if ERROR_MARKER in prompt.lower():
            return "error"
        return "video"

    async def delete(self, task_id: str) -> None:
        """Ark's DELETE: cancel a queued task, delete a finished task's record, refuse a running one."""
        task = self.store.get(task_id)
        if task.status == "queued":
            task.status = "cancelled"
            task.updated_at = time.time()
            return
        if task.status == "running":
            raise task_running(task.id)
        self.store.remove(task)
        await self.renders.discard(task)

    async def expire(self, task_id: str) -> Task:
        """Admin: a succeeded task's URL stops working now; an unfinished task ends `expired` now."""
        task = self.store.get(task_id)
        now = time.time()
        if task.status == "succeeded":
            task.url_expires_at = now - 1
        elif task.status in ("queued", "running"):
            self._end_expired(task, now)
            await self._discard_expired()
        else:
            raise invalid_parameter(f"The task {task.id} is {task.status}: there is nothing to expire.")
        return task

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        for task in self.store.active():
            self._advance(task, now)
        await self._discard_expired()
        await self._remove_files(self.store.expired_with_files(now))

    def _advance(self, task: Task, now: float) -> None:
        if task.status in TERMINAL:
            return
        if now >= task.created_at + task.execution_expires_after:
            self._end_expired(task, now)
            return
        draws = task.ending == "video"
        if task.status == "queued" and self._queue_wait_over(task, now):
            task.status = "running"
            task.updated_at = now
            self._start_rendering(task, now, self._render_job(task) if draws else None)
            self._notify(task)
        if task.status != "running":
            return
        outcome = self._render_settled(task, now, draws=draws)
        if outcome is None:
            return
        if outcome == "failed":
            task.ending = "error"
        if task.ending == "expire":
            self._end_expired(task, now)
            return
        self._finish(task, now)

    def _finish(self, task: Task, now: float) -> None:
        task.updated_at = now
        if task.ending == "video":
            task.status = "succeeded"
            task.url_expires_at = now + self.config.ttl_seconds
            task.signed_query = signed_query(now, self.config.ttl_seconds)
            self.stats.renders_completed += 1
        else:
            task.status = "failed"
        self._notify(task)

    def _end_expired(self, task: Task, now: float) -> None:
        task.status = "expired"
        task.updated_at = now
        # A render in flight stops and its files go: an expired task never has a video.
        self._to_discard.append(task)
        self._notify(task)

    async def _discard_expired(self) -> None:
        while self._to_discard:
            await self.renders.discard(self._to_discard.pop())

    def _notify(self, task: Task) -> None:
        self.sender.publish(self.task_json(task), task.callback_url)

    def _render_job(self, task: Task) -> RenderJob:
        return RenderJob(
            prompt=task.prompt,
            width=task.width,
            height=task.height,
            seconds=task.duration,
            fps=self.settings.fps,
            reference_image=task.reference_image,
            synthetic_bytes=task.synthetic_bytes,
        )
