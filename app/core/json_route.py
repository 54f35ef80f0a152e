"""FastAPI's side of app/core/json_body.py: routes whose bodies FastAPI validates read them with our parser.

Apart from the parser so that what only parses JSON (the webhook receivers' schemas, the CLI) does not import
FastAPI with it.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from app.core.json_body import parse_body


def is_json(request: Request) -> bool:
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    return media_type == "application/json" or media_type.endswith("+json")


class JsonBodyRequest(Request):
    """A request whose `json()` is `parse_body`: what FastAPI calls to read a route's JSON body."""

    _parsed: Any

    async def json(self) -> Any:
        if not hasattr(self, "_parsed"):
            self._parsed = parse_body(await self.body())
        return self._parsed


class JsonBodyRoute(APIRoute):
    """For routers whose bodies FastAPI validates (`route_class=JsonBodyRoute`): the body is parsed here,
    before FastAPI's own reading, so a refusal is our 400 `invalid_json` rather than FastAPI's generic 400
    (which its reader raises for `RecursionError`) or a silently merged duplicate key."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        reads_body = self.body_field is not None

        async def parse_then_handle(request: Request) -> Response:
            request = JsonBodyRequest(request.scope, request.receive)
            if reads_body and is_json(request) and await request.body():
                await request.json()
            return await handler(request)

        return parse_then_handle
