"""The running OpenAI simulator: videos from queued to completed or failed, remix, edit, extension, delete and
expiry; and characters.

`Simulator` is created by `create_simulator_app` and lives on `app.state.simulator`. Its start/stop, lifecycle
tick, render pool and reset are `app.simulator.lifecycle.SimulatorRuntime`'s; this module decides what
OpenAI's contract does with a video: it waits `queue_seconds`, is `in_progress` for `render_seconds` (longer
if drawing its files takes longer), then is `completed` with its files, or `failed` (a blocked word in the
prompt, or a render that broke), and each ending fires its `video.completed`/`video.failed` webhook. Like a
provider account, it may cap creates and remixes per window (`rate_limit_rpm`) and videos queued or rendering
at once (`max_concurrent_renders`), answering 429 past either.

An edit or extension (`derive`) is a new video with the lifecycle, webhooks, limits and counts of a create; it
takes its model, size and seconds from its source (an extension adds its seconds) and its files are drawn
from the source's frames by `app.simulator.derive`. A referenced source must exist (else 404) and be completed
with its content not expired (else 400 `invalid_video_state`, as remix answers); its MP4 is read when the
render starts, so deleting the source before then fails the edit (`video.failed`).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path
from typing import Literal

from pydantic import Field

from app.core.config import SimulatorSettings
from app.simulator.delivery import WebhookSender
from app.simulator.derive import DeriveJob, UploadedVideo, derive_assets
from app.simulator.errors import SimulatorError
from app.simulator.faults import Faults
from app.simulator.lifecycle import RuntimeConfig, SimulatorRuntime
from app.simulator.render import VIDEO_FILE, RenderJob
from app.simulator.state import (
    ArrivalWindow,
    Character,
    CharacterStore,
    Derivation,
    VideoRecord,
    VideoStore,
    new_character_id,
    new_video_id,
)
from app.simulator.validation import DEFAULT_MODEL, CreateParams, DeriveParams, size_dimensions

MODERATION_ERROR = {"code": "moderation_blocked", "message": "Your request was blocked by our moderation system."}
RENDER_ERROR = {"code": "internal_error", "message": "Video generation failed. Please try again."}


class OpenAIConfig(RuntimeConfig):
    """The shared runtime config (`GET`/`PATCH /_sim/config`) and the account's limits (None: no limit)."""

    rate_limit_rpm: int | None = Field(default=None, ge=1)
    rate_limit_window_seconds: float = Field(default=60.0, gt=0)
    max_concurrent_renders: int | None = Field(default=None, ge=1)


class Simulator(SimulatorRuntime):
    label = "simulator"
    store: VideoStore
    faults: Faults
    sender: WebhookSender
    config: OpenAIConfig

    def __init__(self, settings: SimulatorSettings) -> None:
        super().__init__(
            settings,
            store=VideoStore(),
            faults=Faults(),
            sender=WebhookSender(settings, url=lambda: self.config.webhook_url, faults=lambda: self.faults),
            created_key="videos_created",
        )
        self.arrivals = ArrivalWindow()
        self.characters = CharacterStore()

    def _initial_config(self) -> OpenAIConfig:
        return OpenAIConfig.from_settings(
            self.settings,
            rate_limit_rpm=self.settings.rate_limit_rpm,
            rate_limit_window_seconds=self.settings.rate_limit_window_seconds,
            max_concurrent_renders=self.settings.max_concurrent_renders,
        )

    async def reset(self) -> None:
        await super().reset()
        self.arrivals.clear()
        self.characters.clear()

    # --- the account's limits -------------------------------------------------------------------------

    def admit_paid_request(self, now: float) -> None:
        """Count a create, remix, edit or extension against `rate_limit_rpm`, or refuse it with 429 (not counted
        then)."""
        limit = self.config.rate_limit_rpm
        if limit is None:
            return
        window = self.config.rate_limit_window_seconds
        wait = self.arrivals.admit(now, limit=limit, window_seconds=window)
        if wait is None:
            return
        seconds = max(1, math.ceil(wait))
        self._rate_limited(
            f"Rate limit reached for video generations on requests per {window:g}s: Limit {limit}, Used {limit}, "
            f"Requested 1. Please try again in {wait:.3f}s.",
            retry_after=seconds,
        )

    def _check_concurrency(self) -> None:
        limit = self.config.max_concurrent_renders
        if limit is not None and len(self.store.active()) >= limit:
            self._rate_limited(
                f"Too many concurrent video generations: Limit {limit}. Please wait for one to finish.",
                retry_after=1,
            )

    def _rate_limited(self, message: str, *, retry_after: int) -> None:
        self.stats.rate_limited += 1
        raise SimulatorError(
            429, message, type="requests", code="rate_limit_exceeded", headers={"retry-after": str(retry_after)}
        )

    # --- API operations -------------------------------------------------------------------------------

    def create(
        self,
        params: CreateParams,
        *,
        reference_image: bytes | None = None,
        remixed_from: str | None = None,
        derivation: Derivation | None = None,
    ) -> VideoRecord:
        # Checked here, where the video is added with no await in between, so concurrent creates cannot all pass.
        self._check_concurrency()
        synthetic = self.faults.synthetic_asset_bytes
        if synthetic is None:
            synthetic = self.settings.synthetic_asset_bytes
        if synthetic is None and derivation is not None:
            synthetic = derivation.source_synthetic_bytes  # no frames to start from (see app.simulator.derive)
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
            derivation=derivation,
            moderation_blocked=self.config.blocks(params.prompt),
        )
        self.store.add(record)
        self.stats.created += 1
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

    def derive(
        self, kind: Literal["edit", "extension"], params: DeriveParams, upload: UploadedVideo | None
    ) -> VideoRecord:
        """An edit or extension of the referenced video (`params.video_id`) or of the uploaded one."""
        if params.video_id is not None:
            source = self._derivable(params.video_id, "edited" if kind == "edit" else "extended")
            # A referenced video keeps its model; `model` only names the model for an uploaded source.
            model, size, seconds = source.model, source.size, int(source.seconds)
            derivation = Derivation(
                kind=kind,
                source_path=None if source.synthetic_bytes is not None else self.asset_directory(source) / VIDEO_FILE,
                source_synthetic_bytes=source.synthetic_bytes,
                extension_seconds=params.extension_seconds,
            )
        else:
            assert upload is not None, "an edit without a video id has an uploaded file"
            model, size, seconds = params.model or DEFAULT_MODEL, upload.size, upload.seconds
            derivation = Derivation(kind=kind, source_bytes=upload.data, extension_seconds=params.extension_seconds)
        params_of_result = CreateParams(
            prompt=params.prompt, model=model, seconds=str(seconds + params.extension_seconds), size=size
        )
        return self.create(params_of_result, derivation=derivation)

    def _derivable(self, video_id: str, verb: str) -> VideoRecord:
        source = self.store.get(video_id)
        if source.status != "completed":
            raise SimulatorError(
                400,
                f"Video '{video_id}' is {source.status}; only completed videos can be {verb}.",
                param="video",
                code="invalid_video_state",
            )
        if source.is_expired(time.time()) or source.directory is None:
            raise SimulatorError(
                400,
                f"The content of video '{video_id}' has expired; it can no longer be {verb}.",
                param="video",
                code="invalid_video_state",
            )
        return source

    def create_character(self, name: str) -> Character:
        character = Character(id=new_character_id(), name=name, created_at=int(time.time()))
        self.characters.add(character)
        return character

    async def delete(self, video_id: str) -> VideoRecord:
        record = self.store.remove(video_id)
        await self.renders.discard(record)
        return record

    def expire(self, video_id: str) -> VideoRecord:
        record = self.store.get(video_id)
        if record.status != "completed":
            raise SimulatorError(400, f"Video '{video_id}' is {record.status}; only completed videos expire.")
        record.expires_at = int(time.time()) - 1
        return record

    def asset_directory(self, record: VideoRecord) -> Path:
        assert record.directory is not None, "asked for the files of an unrendered video"
        return record.directory

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        for record in self.store.active():
            self._advance(record, now)
        self.sender.flush_due()

    def _advance(self, record: VideoRecord, now: float) -> None:
        due = record.created_at + self.config.queue_seconds
        if record.status == "queued" and self._started and now >= due:
            record.status = "in_progress"
            record.started_at = now
            record.render_seconds = self.config.render_seconds
            if not record.moderation_blocked:
                self._start_drawing(record)
        if record.status != "in_progress" or record.started_at is None:
            return
        if now < record.started_at + record.render_seconds:
            return
        if record.moderation_blocked:
            self._finish(record, now, error=MODERATION_ERROR)
            return
        outcome = self.renders.outcome(record)
        if outcome == "drawing":
            return  # the render outlasts render_seconds: stay at 99 % until the files exist
        self._finish(record, now, error=RENDER_ERROR if outcome == "failed" else None)

    def _start_drawing(self, record: VideoRecord) -> None:
        derivation = record.derivation
        # A synthetic edit or extension is drawn as any synthetic video is: there are no frames to decode.
        if derivation is None or record.synthetic_bytes is not None:
            self.renders.start(record, self._render_job(record))
            return
        width, height = size_dimensions(record.size)
        job = DeriveJob(derivation=derivation, prompt=record.prompt, width=width, height=height, fps=self.settings.fps)
        self.renders.start_drawing(record, functools.partial(derive_assets, job))

    def _finish(self, record: VideoRecord, now: float, *, error: dict[str, str] | None) -> None:
        record.completed_at = int(now)
        if record.derivation is not None and record.derivation.source_bytes is not None:
            # The render is over: an uploaded source need not stay in memory for the video's lifetime.
            record.derivation = dataclasses.replace(record.derivation, source_bytes=None)
        if error is None:
            record.status = "completed"
            record.expires_at = record.completed_at + int(self.config.ttl_seconds)
            self.stats.renders_completed += 1
            self.sender.publish("video.completed", record.id)
        else:
            record.status = "failed"
            record.error = dict(error)
            self.sender.publish("video.failed", record.id)

    def _render_job(self, record: VideoRecord) -> RenderJob:
        width, height = size_dimensions(record.size)
        return RenderJob(
            prompt=record.prompt,
            width=width,
            height=height,
            seconds=int(record.seconds),
            fps=self.settings.fps,
            reference_image=record.reference_image,
            synthetic_bytes=record.synthetic_bytes,
        )
