"""The stock `openai` SDK: a create whose answer is lost on the way back is retried by the SDK itself
(a new multipart boundary, the same Idempotency-Key) and gets the first answer; one render upstream."""

from __future__ import annotations

from typing import Any, cast

import httpx
from fastapi import FastAPI
from openai import AsyncOpenAI

from tests.support.gateway import NewCaller
from tests.support.idempotency import new_key, uploads
from tests.support.transports import CountingTransport


class LosesFirstAnswer(httpx.AsyncBaseTransport):
    """Delivers the first create to the gateway, lets it finish, then drops the connection before the
    answer reaches the client (what a proxy restart or a flaky network does)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner
        self.creates: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/videos":
            self.creates.append(request)
            if len(self.creates) == 1:
                await response.aread()
                await response.aclose()
                raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return response


async def test_sdk_retry_after_a_lost_answer_renders_once(
    gateway_app: FastAPI, new_caller_key: NewCaller, upstream_transport: CountingTransport
) -> None:
    lossy = LosesFirstAnswer(httpx.ASGITransport(app=gateway_app))
    key, before = new_key(), uploads(upstream_transport)
    async with (
        httpx.AsyncClient(transport=lossy) as http_client,
        AsyncOpenAI(
            base_url="http://gateway.test/v1",
            api_key=await new_caller_key(),
            # The SDK takes a plain httpx client (it checks at run time) though it annotates its own `httpx2` one.
            http_client=cast(Any, http_client),
            max_retries=2,
        ) as client,
    ):
        video = await client.videos.create(
            prompt="a lighthouse at dusk", seconds="4", size="1280x720", extra_headers={"Idempotency-Key": key}
        )
        assert len(lossy.creates) == 2  # the SDK did retry on its own ...
        first, retry = lossy.creates
        assert first.headers["idempotency-key"] == retry.headers["idempotency-key"] == key
        assert first.headers["content-type"] != retry.headers["content-type"]  # ... under a new boundary
        assert uploads(upstream_transport) - before == 1
        listed = await client.videos.list()
        assert [v.id for v in listed.data] == [video.id]
        # An explicit repeat later gets the same video too.
        again = await client.videos.create(
            prompt="a lighthouse at dusk", seconds="4", size="1280x720", extra_headers={"Idempotency-Key": key}
        )
        assert again.id == video.id
        assert uploads(upstream_transport) - before == 1
