"""A pure ASGI guard that refuses request bodies over the configured size with 413, streaming or not."""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.errors import PayloadTooLarge, error_body


class BodySizeLimit:
    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        # Compare lengths as text first: int() of a 5,000-digit header raises (CPython's digit limit).
        too_long = (
            declared is not None
            and declared.isdigit()
            and (len(declared.lstrip(b"0")) > len(str(self.max_bytes)) or int(declared) > self.max_bytes)
        )
        if too_long:
            await self._refuse(send)
            return
        seen = 0

        async def bounded_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    # Raised inside the route's body read; the error handler renders it as 413.
                    raise PayloadTooLarge(f"Request body is larger than {self.max_bytes} bytes.")
            return message

        await self.app(scope, bounded_receive, send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps(
            error_body(
                f"Request body is larger than {self.max_bytes} bytes.",
                type="invalid_request_error",
                code="request_too_large",
            )
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
