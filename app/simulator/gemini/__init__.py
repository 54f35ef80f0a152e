"""Gemini simulator: a local stand-in for Veo on Google's Gemini API (`/v1beta`), from Google's documented contract.

It serves `models/{model}:predictLongRunning` (creates, and Veo 3.1's extensions of its own videos),
long-running-operation polls with their three endings (a video sample, an `error`, an RAI filter),
key-protected file downloads that redirect to a token-authorised target, Standard Webhooks-signed
`video.generated` events, and fault knobs under `/_sim`. Modules: `app` (routes and factory), `runtime`
(operations' lifecycle and endings), `state` (operations and their JSON), `validation` (create and extension
checks), `files` (download and redirect), `webhooks` (the event), `faults` (knobs and runtime config),
`errors` (Google's error envelope). The machinery it shares with the OpenAI simulator is in `app.simulator`
(`lifecycle`, `sender`, `admin`, `streaming`, `render`, and `derive`, which draws an extension's MP4).
"""

from app.simulator.gemini.app import create_gemini_simulator_app, gemini_simulator_running

__all__ = ["create_gemini_simulator_app", "gemini_simulator_running"]
