"""Upstream simulator: a local stand-in for OpenAI's asynchronous `/v1/videos` API.

It serves OpenAI's `/v1/videos` contract (13-field `Video` objects, list paging, content variants,
remix, edits, extensions and characters, signed `video.completed`/`video.failed` webhooks with retries),
renders real H.264 MP4s, WebP thumbnails and JPEG spritesheets (edits and extensions made from their source's
frames by `app.simulator.derive`), and exposes fault knobs under `/_sim` (see `app.simulator.faults`).
The live providers' simulators live beside it, each written from its provider's documented contract:
`app.simulator.gemini` (Veo on Google's Gemini API), `app.simulator.seedance`, `app.simulator.fal` and
`app.simulator.replicate`; `simulator_app(kind, settings)` picks one (`video-gateway simulator --kind`).
What they share stands beside OpenAI's modules here: `lifecycle` (start/stop, tick, render pool, reset, runtime config),
`sender` (Standard Webhooks delivery and its fault knobs), `admin` (the common `/_sim` routes),
`streaming` (throttled, truncatable downloads) and `render` (the files themselves).
Public: `simulator_app`, `create_simulator_app` and `create_gemini_simulator_app`, and their in-process
helpers `simulator_running` and `gemini_simulator_running` (the other kinds' are in their own packages).
"""

from fastapi import FastAPI

from app.core.config import SimulatorSettings
from app.simulator.app import create_simulator_app, simulator_running
from app.simulator.gemini import create_gemini_simulator_app, gemini_simulator_running


def simulator_app(kind: str, settings: SimulatorSettings) -> FastAPI:
    """The simulator of one provider kind (`video-gateway simulator --kind`); each imported only when run."""
    if kind == "gemini":
        return create_gemini_simulator_app(settings)
    if kind == "seedance":
        from app.simulator.seedance import create_seedance_simulator_app

        return create_seedance_simulator_app(settings)
    if kind == "fal":
        from app.simulator.fal import create_fal_simulator_app

        return create_fal_simulator_app(settings)
    if kind == "replicate":
        from app.simulator.replicate import create_replicate_simulator_app

        return create_replicate_simulator_app(settings)
    return create_simulator_app(settings)


__all__ = [
    "create_gemini_simulator_app",
    "create_simulator_app",
    "gemini_simulator_running",
    "simulator_app",
    "simulator_running",
]
