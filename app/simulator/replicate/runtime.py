"""The running Replicate simulator: predictions, their lifecycle and endings, cancels, and the hour-later removal.

`ReplicateSimulator` lives on `app.state.simulator`. Its start/stop, lifecycle tick, render pool and reset are
`app.simulator.lifecycle.SimulatorRuntime`'s, as for the other simulators; this module decides what
Replicate's contract does with a prediction: `starting` for `queue_seconds`, then `processing` for
`render_seconds` (longer if drawing the MP4 takes longer), then `succeeded` with an output file, or `failed`
with the ending chosen at create time; `canceled` when cancelled before it ends. Events go to the
prediction's own webhook: `start` at create, `logs` when processing starts, `output` when the video is
written, `completed` at every ending. `ttl_seconds` after a prediction ends its input and output are
removed (Replicate: an hour).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time

from app.core.config import SimulatorSettings
from app.simulator.lifecycle import SimulatorRuntime
from app.simulator.render import RenderJob
from app.simulator.replicate.errors import bad_request
from app.simulator.replicate.faults import Ending, ReplicateConfig, ReplicateFaults
from app.simulator.replicate.state import (
    MODEL_ERROR,
    SENSITIVE_ERROR,
    TERMINAL,
    Prediction,
    PredictionStore,
    new_prediction_id,
)
from app.simulator.replicate.validation import CreateRequest
from app.simulator.replicate.webhooks import ReplicateWebhookSender

# A prompt containing this (any case) ends its prediction `failed` with a model error.
ERROR_MARKER = "sim:error"
# `Prefer: wait` holds a create at most this long (Replicate's cap).
MAX_WAIT_SECONDS = 60.0


class ReplicateSimulator(SimulatorRuntime):
    label = "replicate simulator"
    data_subdir = "replicate"
    store: PredictionStore
    faults: ReplicateFaults
    config: ReplicateConfig
    sender: ReplicateWebhookSender

    def __init__(self, settings: SimulatorSettings, *, public_base_url: str | None = None) -> None:
        self._public_base_url = public_base_url  # set first: the base's __init__ asks `_initial_config`
        super().__init__(
            settings,
            store=PredictionStore(),
            faults=ReplicateFaults(),
            sender=ReplicateWebhookSender(settings, faults=lambda: self.faults),
            created_key="predictions_created",
        )

    def _initial_config(self) -> ReplicateConfig:
        return ReplicateConfig.from_settings(self.settings, public_base_url=self._public_base_url)

    # --- predictions ----------------------------------------------------------------------------------

    def base_url(self, request_base_url: str) -> str:
        """The base of `urls` and output URLs: the configured public base, else the given request's."""
        return self.config.public_base_url or request_base_url

    def create(self, request: CreateRequest, *, base_url: str) -> Prediction:
        synthetic = self.faults.synthetic_asset_bytes
        if synthetic is None:
            synthetic = self.settings.synthetic_asset_bytes
        prediction = Prediction(
            id=new_prediction_id(),
            model=request.model,
            prompt=request.prompt,
            input=request.input,
            width=request.width,
            height=request.height,
            duration_seconds=request.seconds,
            ending=self._choose_ending(request.prompt),
            created_at=time.time(),
            create_base_url=base_url,
            sequence=self.store.next_sequence(),
            webhook=request.webhook,
            webhook_events=request.webhook_events,
            reference_image=request.image,
            synthetic_bytes=synthetic,
        )
        self.store.add(prediction)
        self.stats.created += 1
        self._publish(prediction, "start")
        self._advance(prediction, time.time())  # queue_seconds=0 starts at once, without waiting for a tick
        return prediction

    async def wait(self, prediction: Prediction, seconds: float) -> None:
        """`Prefer: wait`: hold the answer until the prediction ends or `seconds` pass (at most 60)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(prediction.ended.wait(), timeout=min(seconds, MAX_WAIT_SECONDS))

    async def cancel(self, prediction_id: str) -> Prediction:
        """Stop a prediction that has not ended (`canceled`, a `completed` event); an ended one is left as is."""
        prediction = self.store.get(prediction_id)
        if prediction.status in TERMINAL:
            return prediction
        await self.renders.discard(prediction)
        now = time.time()
        prediction.status = "canceled"
        prediction.logs += "Prediction canceled.\n"
        self._end(prediction, now)
        return prediction

    async def expire(self, prediction_id: str) -> Prediction:
        """Remove an ended prediction's input and output now, as Replicate does an hour after it ends."""
        prediction = self.store.get(prediction_id)
        if prediction.status not in TERMINAL:
            raise bad_request(f"Prediction {prediction.id} has not ended; only an ended prediction's data expires.")
        prediction.expires_at = time.time() - 1
        await self._remove_data(prediction)
        return prediction

    def _choose_ending(self, prompt: str) -> Ending:
        forced = self.faults.take_forced_ending()
        if forced is not None:
            return forced
        if self.config.blocks(prompt):
            return "moderation"
        if ERROR_MARKER in prompt.lower():
            return "error"
        return "success"

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        for prediction in self.store.active():
            self._advance(prediction, now)
        for prediction in self.store.due_for_removal(now):
            await self._remove_data(prediction)

    def _advance(self, prediction: Prediction, now: float) -> None:
        draws = prediction.ending == "success"
        if prediction.status == "starting" and self._queue_wait_over(prediction, now):
            prediction.status = "processing"
            shape = f"{prediction.width}x{prediction.height}"
            prediction.logs += f"Generating a {prediction.duration_seconds}s video at {shape}\n"
            self._start_rendering(prediction, now, self._render_job(prediction) if draws else None)
            self._publish(prediction, "logs")
        if prediction.status != "processing":
            return
        outcome = self._render_settled(prediction, now, draws=draws)
        if outcome is None:
            return
        if outcome == "failed":
            prediction.ending = "error"
        self._finish(prediction, now)

    def _finish(self, prediction: Prediction, now: float) -> None:
        if prediction.ending == "success":
            prediction.status = "succeeded"
            prediction.logs += "Video written.\n"
            self.stats.renders_completed += 1
        else:
            prediction.status = "failed"
            prediction.error = SENSITIVE_ERROR if prediction.ending == "moderation" else MODEL_ERROR
        self._end(prediction, now)

    def _end(self, prediction: Prediction, now: float) -> None:
        """Times of an ended prediction, and its events: `output` (a video was written), then `completed`."""
        prediction.completed_at = now
        prediction.expires_at = now + self.config.ttl_seconds
        prediction.ended.set()
        if prediction.status == "succeeded":
            self._publish(prediction, "output")
        self._publish(prediction, "completed")

    async def _remove_data(self, prediction: Prediction) -> None:
        prediction.data_removed = True
        directory, prediction.directory = prediction.directory, None
        if directory is not None:
            await asyncio.to_thread(shutil.rmtree, directory, True)

    def _publish(self, prediction: Prediction, event: str) -> None:
        self.sender.publish(prediction, event, base_url=self.base_url(prediction.create_base_url))

    def _render_job(self, prediction: Prediction) -> RenderJob:
        return RenderJob(
            prompt=prediction.prompt,
            width=prediction.width,
            height=prediction.height,
            seconds=prediction.duration_seconds,
            fps=self.settings.fps,
            reference_image=prediction.reference_image,
            synthetic_bytes=prediction.synthetic_bytes,
        )
