"""The soak's callback receiver: answers 200 to every POST and appends `{webhook_id, type, video_id}` to a
JSON-lines file (`BENCH_CALLBACK_LOG`). A raw ASGI app run by uvicorn (`uvicorn bench.receiver:app`), so
it costs the shared cores next to nothing.
"""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]


async def app(
    scope: Scope, receive: Callable[[], Awaitable[Message]], send: Callable[[Message], Awaitable[None]]
) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["method"] == "POST":
        headers = {name.decode().lower(): value.decode() for name, value in scope["headers"]}
        try:
            event = json.loads(body)
            line = {
                "webhook_id": headers.get("webhook-id"),
                "type": event.get("type"),
                "video_id": event.get("data", {}).get("id"),
            }
        except (ValueError, AttributeError):
            line = {"webhook_id": headers.get("webhook-id"), "type": None, "video_id": None}
        # One short line appended to a local file: cheaper than a thread hop, and the soak waits on nothing here.
        with open(os.environ["BENCH_CALLBACK_LOG"], "a") as log:  # noqa: ASYNC230
            log.write(json.dumps(line) + "\n")
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": b"ok"})
