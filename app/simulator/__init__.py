"""Upstream simulator: a local stand-in for OpenAI's asynchronous `/v1/videos` API.

It serves the contract in `upstream-contract.md` (13-field `Video` objects, list paging, content variants,
remix, signed `video.completed`/`video.failed` webhooks with retries), renders real H.264 MP4s, WebP
thumbnails and JPEG spritesheets, and exposes fault knobs under `/_sim` (see `app.simulator.faults`).
Only `create_simulator_app` and the in-process helper `simulator_running` are public.
"""

from app.simulator.app import create_simulator_app, simulator_running

__all__ = ["create_simulator_app", "simulator_running"]
