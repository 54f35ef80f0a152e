"""The `/_sim` admin routes both simulators answer alike: faults, config, reset, stats, webhooks, finish-renders.

`admin_router` builds them for one simulator, which brings what differs: its key check (`guard`), how it reads
a JSON body and how it refuses a bad one, in its own error envelope. The simulator adds its own admin routes
(the expiry of a video or of an operation) to the router it gets back. The routes, as each app documents them:
`GET`/`PUT`/`PATCH /_sim/faults`, `GET`/`PATCH /_sim/config`, `POST /_sim/reset`, `GET /_sim/stats`,
`GET /_sim/webhooks`, `POST /_sim/finish-renders`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ValidationError

from app.simulator.lifecycle import SimulatorRuntime

KnobsT = TypeVar("KnobsT", bound=BaseModel)


def _runtime(request: Request) -> SimulatorRuntime:
    simulator: SimulatorRuntime = request.app.state.simulator
    return simulator


RuntimeDep = Annotated[SimulatorRuntime, Depends(_runtime)]


def admin_router(
    *,
    guard: Callable[..., Awaitable[None]],
    read_json: Callable[[Request], Awaitable[Any]],
    invalid: Callable[[str, str | None], Exception],
    not_an_object: Callable[[], Exception],
) -> APIRouter:
    """The shared `/_sim` routes, behind `guard`.

    `read_json` parses a body (refusing what is not JSON); `invalid(message, param)` is the provider's 400 for
    a bad value of `param`; `not_an_object()` its 400 for a JSON body that is not an object.
    """
    router = APIRouter(prefix="/_sim", dependencies=[Depends(guard)])

    def merged(model: type[KnobsT], current: Mapping[str, Any], changes: Any) -> KnobsT:
        """`current` with `changes` applied, validated as a whole; the faults and config knobs are merged so."""
        if not isinstance(changes, dict):
            raise not_an_object()
        try:
            return model.model_validate({**current, **changes})
        except ValidationError as exc:
            first = exc.errors()[0]
            param = ".".join(str(part) for part in first["loc"]) or None
            raise invalid(f"Invalid '{param}': {first['msg']}", param) from exc

    @router.get("/faults")
    async def get_faults(simulator: RuntimeDep) -> dict[str, Any]:
        return simulator.faults.model_dump()

    @router.put("/faults")
    async def replace_faults(simulator: RuntimeDep, request: Request) -> dict[str, Any]:
        simulator.faults = merged(type(simulator.faults), {}, await read_json(request))
        return simulator.faults.model_dump()

    @router.patch("/faults")
    async def update_faults(simulator: RuntimeDep, request: Request) -> dict[str, Any]:
        simulator.faults = merged(type(simulator.faults), simulator.faults.model_dump(), await read_json(request))
        return simulator.faults.model_dump()

    @router.get("/config")
    async def get_config(simulator: RuntimeDep) -> dict[str, Any]:
        return simulator.config.model_dump()

    @router.patch("/config")
    async def update_config(simulator: RuntimeDep, request: Request) -> dict[str, Any]:
        simulator.config = merged(type(simulator.config), simulator.config.model_dump(), await read_json(request))
        return simulator.config.model_dump()

    @router.post("/reset")
    async def reset(simulator: RuntimeDep) -> dict[str, Any]:
        await simulator.reset()
        return {"reset": True}

    @router.get("/stats")
    async def stats(simulator: RuntimeDep) -> dict[str, Any]:
        return {**simulator.stats.as_json(), "renders_pending": simulator.renders.pending}

    @router.get("/webhooks")
    async def webhooks(simulator: RuntimeDep) -> dict[str, Any]:
        return {"object": "list", "data": [delivery.as_json() for delivery in simulator.sender.deliveries]}

    @router.post("/finish-renders")
    async def finish_renders(simulator: RuntimeDep, request: Request) -> dict[str, Any]:
        body = await read_json(request)
        over = body.get("over_seconds", 0) if isinstance(body, dict) else None
        if not isinstance(over, int | float) or isinstance(over, bool) or over < 0:
            raise invalid("'over_seconds' must be a number >= 0.", "over_seconds")
        return {"released": simulator.finish_renders(float(over))}

    return router
