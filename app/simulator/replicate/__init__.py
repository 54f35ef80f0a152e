"""Replicate simulator: a local stand-in for Replicate's prediction API (`/v1`), from Replicate's documented contract.

It serves model-scoped creates (`/v1/models/{owner}/{name}/predictions`) for the video models the gateway
maps, checked against each model's input schema; prediction reads, the cursor-paged list and cancel; the
lifecycle `starting` → `processing` → `succeeded` / `failed` (`canceled` on cancel) with real MP4s served as
output files outside the API's auth; the removal of inputs and outputs `ttl_seconds` after a prediction ends;
per-request webhooks (the prediction object, `webhook_events_filter` honoured) signed the Standard Webhooks way;
and fault knobs under `/_sim`. Modules: `app` (routes and factory), `runtime` (lifecycle and endings), `state`
(predictions, their JSON, list pages), `validation` (model schemas and create checks), `files` (the output
files), `webhooks` (per-request deliveries), `faults` (knobs and runtime config), `errors` (Replicate's
problem details). The machinery it shares with the other simulators is in `app.simulator` (`lifecycle`,
`sender`, `admin`, `streaming`, `render`).
"""

from app.simulator.replicate.app import create_replicate_simulator_app, replicate_simulator_running

__all__ = ["create_replicate_simulator_app", "replicate_simulator_running"]
