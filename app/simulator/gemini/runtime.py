"""The running Gemini simulator: operations, their endings, and the expiry of their files.

`GeminiSimulator` lives on `app.state.simulator`. Its start/stop, lifecycle tick, render pool and reset are
`app.simulator.lifecycle.SimulatorRuntime`'s, as for the OpenAI simulator; this module decides what Google's
contract does with an operation: it waits `queue_seconds`, then runs for `render_seconds` (longer if drawing
the MP4 takes longer), then is done with the ending chosen at create time. Only a sample fires the
`video.generated` webhook. Files are removed `ttl_seconds` after completion.

An extension (`extend`) is an operation like any other (the same queue, endings, faults and webhook); it is
accepted only for a file this simulator generated that is still kept, at 720p, at most 141 s long and of the
requested aspect ratio (else 400 INVALID_ARGUMENT), and its MP4 is the source's frames followed by 7 s of new
ones, drawn in the same bounded pool by the shared `app.simulator.derive` (a synthetic source, or synthetic
mode, makes a synthetic extension). If the source's file is gone by the time the extension starts drawing, the
extension ends with an `error`.
"""

from __future__ import annotations

import functools
import time

from app.core.config import SimulatorSettings
from app.simulator.derive import DeriveJob, derive_assets
from app.simulator.gemini.errors import invalid_argument
from app.simulator.gemini.faults import Ending, GeminiConfig, GeminiFaults
from app.simulator.gemini.state import Operation, OperationStore, download_uri, new_resource_id
from app.simulator.gemini.validation import (
    DIMENSIONS,
    EXTENSION_RESOLUTION,
    EXTENSION_SECONDS,
    MAX_EXTENSION_INPUT_SECONDS,
    CreateRequest,
    ExtendRequest,
)
from app.simulator.gemini.webhooks import GeminiWebhookSender
from app.simulator.lifecycle import SimulatorRuntime
from app.simulator.render import VIDEO_FILE, RenderJob
from app.simulator.state import Derivation

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
            synthetic_bytes=self._synthetic_bytes(),
        )
        return self._add(operation)

    def extend(self, request: ExtendRequest, *, base_url: str) -> Operation:
        """An extension of a video this simulator generated: that video followed by 7 s more."""
        source = self._extendable(request, time.time())
        synthetic = self._synthetic_bytes()
        if synthetic is None and source.synthetic_bytes is not None:
            synthetic = source.synthetic_bytes  # no frames to continue: a synthetic source extends synthetically
        operation = Operation(
            id=new_resource_id(),
            model=request.model,
            prompt=request.prompt,
            width=source.width,
            height=source.height,
            duration_seconds=source.duration_seconds + EXTENSION_SECONDS,
            ending=self._choose_ending(request.prompt),
            created_at=time.time(),
            create_base_url=base_url,
            synthetic_bytes=synthetic,
            extends=source.id,
        )
        return self._add(operation)

    def _extendable(self, request: ExtendRequest, now: float) -> Operation:
        """The operation whose generated file the extension names, if Veo would extend it; else a 400."""
        source = self.store.by_file_id(request.file_id)
        if source is None or not source.has_file:
            raise invalid_argument(
                f"`instances[0].video.uri` names file {request.file_id}, which is not a video generated by Veo."
            )
        if not source.file_available(now):
            raise invalid_argument(
                f"The video file {request.file_id} has expired or was deleted; it can no longer be extended."
            )
        if (source.width, source.height) not in (
            dimensions for (_, resolution), dimensions in DIMENSIONS.items() if resolution == EXTENSION_RESOLUTION
        ):
            raise invalid_argument(
                f"Video extension supports only {EXTENSION_RESOLUTION} input videos; file {request.file_id} is "
                f"{source.width}x{source.height}."
            )
        aspect_ratio = "16:9" if source.width > source.height else "9:16"
        if request.aspect_ratio is not None and request.aspect_ratio != aspect_ratio:
            raise invalid_argument(
                f"`aspectRatio` {request.aspect_ratio} does not match the input video's aspect ratio {aspect_ratio}."
            )
        if source.duration_seconds > MAX_EXTENSION_INPUT_SECONDS:
            raise invalid_argument(
                f"Input videos for extension are limited to {MAX_EXTENSION_INPUT_SECONDS} seconds; file "
                f"{request.file_id} is {source.duration_seconds} seconds long."
            )
        return source

    def _synthetic_bytes(self) -> int | None:
        synthetic = self.faults.synthetic_asset_bytes
        return self.settings.synthetic_asset_bytes if synthetic is None else synthetic

    def _add(self, operation: Operation) -> Operation:
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
            if draws:
                self._start_drawing(operation, now)
                draws = operation.ending == "sample"
            else:
                self._start_rendering(operation, now, None)
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

    def _start_drawing(self, operation: Operation, now: float) -> None:
        """Draw the operation's MP4 in the render pool: an extension's from its source's frames (a synthetic
        one as any synthetic video), any other as `render.render_assets` draws a create."""
        if operation.extends is None or operation.synthetic_bytes is not None:
            self._start_rendering(operation, now, self._render_job(operation))
            return
        source = self.store.get(operation.extends)
        if source is None or source.directory is None or not source.file_available(now):
            # The source's file went (expired) before the extension started: nothing to continue.
            operation.ending = "error"
            self._start_rendering(operation, now, None)
            return
        job = DeriveJob(
            derivation=Derivation(
                kind="extension", source_path=source.directory / VIDEO_FILE, extension_seconds=EXTENSION_SECONDS
            ),
            prompt=operation.prompt,
            width=operation.width,
            height=operation.height,
            fps=self.settings.fps,
        )
        self._start_rendering(operation, now, None)
        self.renders.start_drawing(operation, functools.partial(derive_assets, job))

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
