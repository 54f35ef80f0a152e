"""fal simulator: a local stand-in for fal.ai's queue API (`queue.fal.run`), from fal's documented contract.

It serves submits to the video endpoints of several model families (each with its own input schema), status
polls through `IN_QUEUE` (with a queue position) → `IN_PROGRESS` → `COMPLETED` (with a video, an error or a
content-policy refusal), results, cancels of queued requests, public MP4 files on a CDN stand-in that expire,
completion webhooks to each request's `fal_webhook` signed with Ed25519, the JWKS publishing their keys, and
fault knobs under `/_sim`. Modules: `app` (routes and factory), `runtime` (the queue's lifecycle and endings),
`state` (requests and their JSON), `validation` (per-endpoint input schemas), `webhooks` (the deliveries),
`signing` (the keys and the JWKS), `faults` (knobs and runtime config), `errors` (fal's `{"detail"}`
envelope). The machinery it shares with the other simulators is in `app.simulator` (`lifecycle`, `sender`,
`admin`, `streaming`, `render`).
"""

from app.simulator.fal.app import create_fal_simulator_app, fal_simulator_running

__all__ = ["create_fal_simulator_app", "fal_simulator_running"]
