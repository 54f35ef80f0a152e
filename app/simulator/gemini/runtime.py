"""The running Gemini simulator: operations, their endings, and the expiry of their files.

`GeminiSimulator` lives on `app.state.simulator`. Its start/stop, lifecycle tick, render pool and reset are
`app.simulator.lifecycle.SimulatorRuntime`'s, as for the OpenAI simulator; this module decides what Google's
contract does with an operation: it waits `queue_seconds`, then runs for `render_seconds` (longer if drawing
the MP4 takes longer), then is done with the ending chosen at create time. Only a sample fires the
`video.generated` webhook. Files are removed `ttl_seconds` after completion.
"""

from __future__ import annotations

import time

from app.core.config import SimulatorSettings
from app.simulator.gemini.errors import invalid_argument
from app.simulator.gemini.faults import Ending, GeminiConfig, GeminiFaults
from app.simulator.gemini.state import Operation, OperationStore, download_uri, new_resource_id
from app.simulator.gemini.validation import CreateRequest
from app.simulator.gemini.webhooks import GeminiWebhookSender
from app.simulator.lifecycle import SimulatorRuntime
from app.simulator.render import RenderJob

# A prompt containing this (any case) ends its operation with `error` (code 13, INTERNAL).
ERROR_MARKER = "sim:error"


class GeminiSimulator(SimulatorRuntime):
    label = "gemini simulator"
    data_subdir = "gemini"
    store: OperationStore
    faults: GeminiFaults
    config: GeminiConfig
    sender: GeminiWebhookSender

    def __init__(self, settings: SimulatorSettings, *, public_base_url: str | None = None) -> None:
        self._public_base_url = public_base_url  # set first: the base's __init__ asks `_initial_config`
        super().__init__(
            settings,
            store=OperationStore(),
            faults=GeminiFaults(),
            sender=GeminiWebhookSender(settings, url=lambda: self.config.webhook_url, faults=lambda: self.faults),
            created_key="operations_created",
        )

    def _initial_config(self) -> GeminiConfig:
        return GeminiConfig.from_settings(self.settings, public_base_url=self._public_base_url)

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
        self.stats.created += 1
        self._advance(operation, time.time())  # queue_seconds=0 starts at once, without waiting for a tick
        return operation

    def _choose_ending(self, prompt: str) -> Ending:
        forced = self.faults.take_forced_ending()
        if forced is not None:
            return forced
        if self.config.blocks(prompt):
            return "moderation"
        if ERROR_MARKER in prompt.lower():
            return "error"
        return "sample"

    def expire(self, operation_id: str) -> Operation:
        """Make a finished operation's file gone now (its files are removed on the next tick)."""
        operation = self.store.by_id(operation_id)
        if not operation.has_file:
            raise invalid_argument(f"Operation {operation.name} has no generated file to expire.")
        operation.expires_at = time.time() - 1
        return operation

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        for operation in self.store.active():
            self._advance(operation, now)
        await self._remove_files(self.store.expired_with_files(now))

    def _advance(self, operation: Operation, now: float) -> None:
        draws = operation.ending == "sample"
        if operation.phase == "queued" and self._queue_wait_over(operation, now):
            operation.phase = "running"
            self._start_rendering(operation, now, self._render_job(operation) if draws else None)
        if operation.phase != "running":
            return
        outcome = self._render_settled(operation, now, draws=draws)
        if outcome is None:
            return
        if outcome == "failed":
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

    def _render_job(self, operation: Operation) -> RenderJob:
        return RenderJob(
            prompt=operation.prompt,
            width=operation.width,
            height=operation.height,
            seconds=operation.duration_seconds,
            fps=self.settings.fps,
            reference_image=operation.reference_image,
            synthetic_bytes=operation.synthetic_bytes,
        )
