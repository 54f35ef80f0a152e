"""Upstream simulator: a local stand-in for OpenAI's asynchronous `/v1/videos` API.

It serves OpenAI's `/v1/videos` contract (13-field `Video` objects, list paging, content variants,
remix, signed `video.completed`/`video.failed` webhooks with retries), renders real H.264 MP4s, WebP
thumbnails and JPEG spritesheets, and exposes fault knobs under `/_sim` (see `app.simulator.faults`).
A second simulator, of Veo on Google's Gemini API, lives in `app.simulator.gemini`. What the two share
stands beside OpenAI's modules here: `lifecycle` (start/stop, tick, render pool, reset, runtime config),
`sender` (Standard Webhooks delivery and its fault knobs), `admin` (the common `/_sim` routes),
`streaming` (throttled, truncatable downloads) and `render` (the files themselves).
Public: `create_simulator_app` and `create_gemini_simulator_app`, and their in-process helpers
`simulator_running` and `gemini_simulator_running`.
"""

from app.simulator.app import create_simulator_app, simulator_running
from app.simulator.gemini import create_gemini_simulator_app, gemini_simulator_running

__all__ = ["create_gemini_simulator_app", "create_simulator_app", "gemini_simulator_running", "simulator_running"]
