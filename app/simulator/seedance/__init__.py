"""Seedance simulator: a local stand-in for ByteDance Seedance on BytePlus ModelArk (`/api/v3`), from its contract.

It serves the video-generation task routes (create, get, list with paging and filters, delete that cancels a
queued task or deletes a finished one), the task lifecycle `queued` → `running` → `succeeded` | `failed` |
`expired` with real MP4s behind presigned TOS-like URLs that stop working after `ttl_seconds`, unsigned
callbacks of the task object to each task's `callback_url`, Ark's error envelope, and fault knobs under
`/_sim`. Modules: `app` (routes and factory), `runtime` (the lifecycle, cancel and delete), `state` (tasks and
their JSON), `validation` (create checks, models, pixel sizes), `files` (the file host), `callbacks` (the
unsigned POSTs), `faults` (knobs and runtime config), `errors` (Ark's envelope). The machinery it shares with
the other simulators is in `app.simulator` (`lifecycle`, `sender`, `admin`, `streaming`, `render`).
"""

from app.simulator.seedance.app import create_seedance_simulator_app, seedance_simulator_running

__all__ = ["create_seedance_simulator_app", "seedance_simulator_running"]
