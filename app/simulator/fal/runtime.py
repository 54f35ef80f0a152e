"""The running fal simulator: queue requests, their endings, cancellation, and the expiry of their files.

`FalSimulator` lives on `app.state.simulator`. Its start/stop, lifecycle tick, render pool and reset are
`app.simulator.lifecycle.SimulatorRuntime`'s, as for the other simulators; this module decides what fal's queue
does with a request: it waits `IN_QUEUE` for `queue_seconds` (its `queue_position` counting the queued
requests ahead of it), runs `IN_PROGRESS` for `render_seconds` (longer if drawing the MP4 takes longer), then
is `COMPLETED` with the ending chosen at submit, and its webhook goes to the request's `fal_webhook`. A cancel
takes effect only while queued. Files are removed `ttl_seconds` after completion.
"""

from __future__ import annotations

import time

import httpx

from app.core.config import SimulatorSettings
from app.simulator.fal.errors import bad_request
from app.simulator.fal.faults import Ending, FalConfig, FalFaults
from app.simulator.fal.signing import SigningKeys
from app.simulator.fal.state import FalRequest, RequestStore, new_request_id
from app.simulator.fal.validation import SubmitRequest
from app.simulator.fal.webhooks import FalWebhookSender
from app.simulator.lifecycle import SimulatorRuntime
from app.simulator.render import VIDEO_FILE, RenderJob

# A prompt containing this (any case) ends its request with an error (`runner_server_error`).
ERROR_MARKER = "sim:error"


class FalSimulator(SimulatorRuntime):
    label = "fal simulator"
    data_subdir = "fal"
    store: RequestStore
    faults: FalFaults
    config: FalConfig
    sender: FalWebhookSender

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        public_base_url: str | None = None,
        webhook_transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._public_base_url = public_base_url  # set first: the base's __init__ asks `_initial_config`
        self.keys = SigningKeys()
        super().__init__(
            settings,
            store=RequestStore(),
            faults=FalFaults(),
            sender=FalWebhookSender(
                settings, faults=lambda: self.faults, keys=lambda: self.keys, transport=webhook_transport
            ),
            created_key="requests_created",
        )

    def _initial_config(self) -> FalConfig:
        return FalConfig.from_settings(self.settings, public_base_url=self._public_base_url)

    def files_base_url(self, request_base_url: str) -> str:
        """The base of file URLs: the configured public base (the CDN's host), else the given request's."""
        return self.config.public_base_url or request_base_url

    # --- requests -------------------------------------------------------------------------------------

    def submit(self, request: SubmitRequest, *, base_url: str, webhook_url: str | None) -> FalRequest:
        synthetic = self.faults.synthetic_asset_bytes
        if synthetic is None:
            synthetic = self.settings.synthetic_asset_bytes
        record = FalRequest(
            id=new_request_id(),
            endpoint=request.endpoint,
            prompt=request.prompt,
            width=request.width,
            height=request.height,
            seconds=request.seconds,
            ending=self._choose_ending(request.prompt),
            created_at=time.time(),
            create_base_url=base_url,
            webhook_url=webhook_url,
            reference_image=request.image,
            synthetic_bytes=synthetic,
        )
        self.store.add(record)
        self.stats.created += 1
        self._advance(record, time.time())  # queue_seconds=0 starts at once, without waiting for a tick
        return record

    def _choose_ending(self, prompt: str) -> Ending:
        forced = self.faults.take_forced_ending()
        if forced is not None:
            return forced
        if self.config.blocks(prompt):
            return "moderation"
        if ERROR_MARKER in prompt.lower():
            return "error"
        return "video"

    def cancel(self, app: str, request_id: str) -> FalRequest:
        """Cancel a request still in the queue; 400 once it runs or has ended (fal cannot stop a render)."""
        record = self.store.of_app(app, request_id)
        if record.phase != "queued":
            raise bad_request("Request cannot be cancelled: it has already started or completed.")
        record.phase = "cancelled"
        record.completed_at = time.time()
        record.cancelled.set()
        return record

    def expire(self, request_id: str) -> FalRequest:
        """Make a finished request's file gone now (its files are removed on the next tick)."""
        record = self.store.by_id(request_id)
        if not record.has_file:
            raise bad_request(f"Request {request_id} has no output file to expire.")
        record.expires_at = time.time() - 1
        return record

    def rotate_key(self) -> str:
        """Sign with a new key from now on (the previous one stays published); returns its key id."""
        return self.keys.rotate().kid

    # --- lifecycle ------------------------------------------------------------------------------------

    async def _tick(self, now: float) -> None:
        for record in self.store.active():
            self._advance(record, now)
        await self._remove_files(self.store.expired_with_files(now))

    def _advance(self, record: FalRequest, now: float) -> None:
        draws = record.ending == "video"
        if record.phase == "queued" and self._queue_wait_over(record, now):
            record.phase = "running"
            self._start_rendering(record, now, self._render_job(record) if draws else None)
        if record.phase != "running":
            return
        outcome = self._render_settled(record, now, draws=draws)
        if outcome is None:
            return
        if outcome == "failed":
            record.ending = "error"
        self._finish(record, now)

    def _finish(self, record: FalRequest, now: float) -> None:
        record.phase = "done"
        record.completed_at = now
        if record.ending == "video":
            record.expires_at = now + self.config.ttl_seconds
            record.file_size = self._file_size(record)
            self.stats.renders_completed += 1
        if record.webhook_url is not None:
            body = record.webhook_body(self.files_base_url(record.create_base_url))
            self.sender.publish(record.webhook_url, record.id, body)

    @staticmethod
    def _file_size(record: FalRequest) -> int | None:
        if record.synthetic_bytes is not None:
            return record.synthetic_bytes
        if record.directory is None:
            return None
        try:
            return (record.directory / VIDEO_FILE).stat().st_size
        except FileNotFoundError:
            return None

    def _render_job(self, record: FalRequest) -> RenderJob:
        return RenderJob(
            prompt=record.prompt,
            width=record.width,
            height=record.height,
            seconds=record.seconds,
            fps=self.settings.fps,
            reference_image=record.reference_image,
            synthetic_bytes=record.synthetic_bytes,
        )
