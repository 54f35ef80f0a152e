"""The Seedance simulator's callbacks: the task object, POSTed unsigned to the task's `callback_url`.

Ark documents a POST of the task object (the body `GET /contents/generations/tasks/{id}` would return) to the
`callback_url` given at create, on every status change it reports (`queued`, `running`, `succeeded`, `failed`,
`expired`), and no signature of any kind: so none is sent, and no `webhook-*` header either. Retries,
drop/duplicate/delay knobs and the `/_sim/webhooks` log are `app.simulator.sender`'s; what differs is the
destination (each task's own URL, unless the runtime config's `webhook_url` overrides every one) and the
request (a plain JSON POST).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, Final

import httpx

from app.core.config import SimulatorSettings
from app.simulator.seedance.faults import SeedanceFaults
from app.simulator.sender import ATTEMPT_TIMEOUT_SECONDS, Attempt, Delivery, SignedSender

USER_AGENT: Final = "video-gateway-seedance-simulator/1.0"
# The shared sender sends only while its URL callable answers something; each callback here carries its own
# destination (in the delivery's summary), so that callable never answers None.
_EACH_TASK_ITS_OWN: Final = "(each task's callback_url)"


class CallbackSender(SignedSender[SeedanceFaults]):
    """Sends task callbacks, unsigned, to each task's destination."""

    def __init__(
        self,
        settings: SimulatorSettings,
        *,
        override: Callable[[], str | None],
        faults: Callable[[], SeedanceFaults],
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        # No secret: Ark signs nothing, so neither does its stand-in.
        super().__init__(
            settings.model_copy(update={"webhook_secret": None}),
            url=lambda: override() or _EACH_TASK_ITS_OWN,
            faults=faults,
            user_agent=USER_AGENT,
            id_prefix="cb_",
        )
        self._override = override
        # In-process tests deliver through an ASGI transport instead of a socket.
        self._transport = transport

    async def start(self) -> None:
        self._client = httpx.AsyncClient(
            timeout=ATTEMPT_TIMEOUT_SECONDS, follow_redirects=False, transport=self._transport
        )

    def publish(self, task: dict[str, Any], callback_url: str | None) -> None:
        """Queue the callback of one status change (called from the lifecycle loop; never blocks)."""
        if callback_url is None and self._override() is None:
            return
        # `task_status`: the log's own `status` is the delivery's (pending, delivered, …).
        summary = {"task_id": task["id"], "task_status": task["status"], "callback_url": callback_url}
        self.send(json.dumps(task), summary)

    async def _attempt(self, delivery: Delivery, number: int) -> bool:
        url = self._override() or delivery.summary.get("callback_url")
        assert self._client is not None, "the sender's start() was not awaited"
        now = time.time()
        if not url:
            delivery.attempts.append(Attempt(number, now, None, "no callback_url"))
            return False
        headers = {"content-type": "application/json", "user-agent": USER_AGENT}
        try:
            response = await self._client.post(url, content=delivery.body.encode(), headers=headers)
        except httpx.HTTPError as exc:
            delivery.attempts.append(Attempt(number, now, None, f"{type(exc).__name__}: {exc}"))
            return False
        delivery.attempts.append(Attempt(number, now, response.status_code, None))
        return 200 <= response.status_code < 300
