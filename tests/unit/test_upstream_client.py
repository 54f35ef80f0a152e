"""The upstream client's retry and error policy, against scripted transports (no network)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest

from app.core.config import UpstreamSettings
from app.core.errors import RateLimited, ResourceNotFound, UpstreamError, UpstreamTimeout, UpstreamUnavailable
from app.upstream.client import UpstreamClient, UpstreamRejected, render_may_have_started, retry_after_seconds
from app.upstream.schemas import CreateVideoCommand, ImageInput

VIDEO = {
    "id": "video_up1",
    "object": "video",
    "model": "sora-2",
    "status": "queued",
    "progress": 0,
    "created_at": 1_700_000_000,
    "completed_at": None,
    "expires_at": None,
    "prompt": "p",
    "size": "720x1280",
    "seconds": "4",
    "remixed_from_video_id": None,
    "error": None,
}
COMMAND = CreateVideoCommand(prompt="a cat", model="sora-2", seconds="4", size="720x1280")


def scripted(*steps: Callable[[httpx.Request], httpx.Response]) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    """A transport that plays `steps` in order (the last one repeats) and records every request."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        step = steps[min(len(seen), len(steps)) - 1]
        return step(request)

    return httpx.MockTransport(handler), seen


def answer(status: int, body: object = None, headers: dict[str, str] | None = None) -> Callable[..., httpx.Response]:
    return lambda _request: httpx.Response(status, json=body if body is not None else VIDEO, headers=headers)


def fail(exc: type[Exception]) -> Callable[[httpx.Request], httpx.Response]:
    def raise_(request: httpx.Request) -> httpx.Response:
        raise exc("scripted", request=request)  # type: ignore[call-arg]

    return raise_


def client_with(transport: httpx.MockTransport, *, allow_http: bool = True, **overrides: object) -> UpstreamClient:
    settings = UpstreamSettings(
        base_url="http://upstream.test/v1",
        api_key="up-secret",
        retry_base_seconds=0,
        retry_max_seconds=0,
        **overrides,
    )
    return UpstreamClient(settings, transport=transport, allow_http_redirects=allow_http)


class TestCreateRetries:
    async def test_create_is_retried_after_429_and_then_succeeds(self) -> None:
        transport, seen = scripted(answer(429, {"error": {"message": "slow down"}}, {"retry-after": "0"}), answer(200))
        client = client_with(transport)
        video = await client.create_video(COMMAND)
        await client.aclose()
        assert video.id == "video_up1"
        assert len(seen) == 2

    async def test_create_is_retried_when_connection_is_refused(self) -> None:
        transport, seen = scripted(fail(httpx.ConnectError), answer(200))
        client = client_with(transport)
        assert (await client.create_video(COMMAND)).id == "video_up1"
        await client.aclose()
        assert len(seen) == 2

    async def test_create_is_not_retried_after_a_5xx_and_says_so(self) -> None:
        transport, seen = scripted(answer(502, {"error": {"message": "bad gateway"}}), answer(200))
        client = client_with(transport)
        with pytest.raises(UpstreamError) as caught:
            await client.create_video(COMMAND)
        await client.aclose()
        assert len(seen) == 1
        assert caught.value.headers["x-should-retry"] == "false"
        assert render_may_have_started(caught.value)

    async def test_create_is_not_retried_after_a_read_timeout(self) -> None:
        transport, seen = scripted(fail(httpx.ReadTimeout), answer(200))
        client = client_with(transport)
        with pytest.raises(UpstreamTimeout) as caught:
            await client.create_video(COMMAND)
        await client.aclose()
        assert len(seen) == 1
        assert caught.value.status_code == 504
        assert render_may_have_started(caught.value)

    async def test_create_gives_up_after_the_configured_attempts_on_429(self) -> None:
        transport, seen = scripted(answer(429, {"error": {"message": "busy", "code": "rate_limit_exceeded"}}))
        client = client_with(transport, create_attempts=3)
        with pytest.raises(RateLimited):
            await client.create_video(COMMAND)
        await client.aclose()
        assert len(seen) == 3

    async def test_unreachable_upstream_is_503_and_nothing_was_started(self) -> None:
        transport, seen = scripted(fail(httpx.ConnectError))
        client = client_with(transport, create_attempts=2)
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.create_video(COMMAND)
        await client.aclose()
        assert len(seen) == 2
        assert not render_may_have_started(caught.value)


class TestReads:
    async def test_retrieve_is_retried_on_5xx(self) -> None:
        transport, seen = scripted(answer(503, {"error": {"message": "x"}}), answer(200))
        client = client_with(transport)
        assert (await client.retrieve_video("video_up1")).status == "queued"
        await client.aclose()
        assert len(seen) == 2

    async def test_upstream_4xx_is_passed_on_with_its_message(self) -> None:
        body = {"error": {"message": "Invalid size", "type": "invalid_request_error", "param": "size", "code": "x"}}
        transport, _ = scripted(answer(400, body))
        client = client_with(transport)
        with pytest.raises(UpstreamRejected) as caught:
            await client.create_video(COMMAND)
        await client.aclose()
        assert (caught.value.status_code, caught.value.message, caught.value.param) == (400, "Invalid size", "size")

    async def test_upstream_404_is_not_found(self) -> None:
        transport, _ = scripted(answer(404, {"error": {"message": "gone"}}))
        client = client_with(transport)
        with pytest.raises(ResourceNotFound):
            await client.retrieve_video("video_x")
        await client.aclose()

    async def test_rejected_gateway_credentials_do_not_look_like_a_caller_auth_error(self) -> None:
        transport, _ = scripted(answer(401, {"error": {"message": "bad key up-secret"}}))
        client = client_with(transport)
        with pytest.raises(UpstreamError) as caught:
            await client.retrieve_video("video_x")
        await client.aclose()
        assert caught.value.status_code == 502
        assert "up-secret" not in caught.value.message

    async def test_recent_videos_pages_back_until_a_page_reaches_past_the_start(self) -> None:
        def page(ids_and_times: list[tuple[str, int]], has_more: bool) -> Callable[..., httpx.Response]:
            data = [{**VIDEO, "id": video_id, "created_at": at} for video_id, at in ids_and_times]
            return answer(200, {"object": "list", "data": data, "has_more": has_more})

        transport, seen = scripted(
            page([("video_c", 1_000), ("video_b", 990)], True),
            page([("video_a", 980), ("video_old", 900)], True),
            page([("video_older", 800)], False),
        )
        client = client_with(transport)
        found = await client.recent_videos(created_since=950)
        await client.aclose()
        assert [video.id for video in found or []] == ["video_c", "video_b", "video_a"]
        # The second page reached back past 950: no third request.
        assert [dict(request.url.params) for request in seen] == [
            {"order": "desc", "limit": "100"},
            {"order": "desc", "limit": "100", "after": "video_b"},
        ]


class TestWireFormat:
    async def test_create_sends_multipart_with_the_image_part_and_the_bearer_key(self) -> None:
        transport, seen = scripted(answer(200))
        client = client_with(transport)
        image = ImageInput(data=b"\x89PNG...", content_type="image/png", filename="ref.png")
        await client.create_video(
            CreateVideoCommand(prompt="a cat", model="sora-2", seconds="8", size="1280x720", image=image)
        )
        await client.aclose()
        request = seen[0]
        assert request.headers["authorization"] == "Bearer up-secret"
        assert request.headers["content-type"].startswith("multipart/form-data")
        body = request.content
        assert b'name="seconds"\r\n\r\n8' in body
        assert b'name="input_reference"; filename="ref.png"' in body

    async def test_create_with_remote_image_url_sends_json(self) -> None:
        transport, seen = scripted(answer(200))
        client = client_with(transport)
        await client.create_video(
            CreateVideoCommand(prompt="p", model="m", seconds="4", size="720x1280", image_url="https://img.test/a.png")
        )
        await client.aclose()
        assert seen[0].headers["content-type"] == "application/json"
        assert b'"image_url":"https://img.test/a.png"' in seen[0].content


class TestContentRedirects:
    async def test_cross_host_redirect_drops_the_authorization_header(self) -> None:
        def route(request: httpx.Request) -> httpx.Response:
            if request.url.host == "upstream.test":
                return httpx.Response(302, headers={"location": "http://cdn.test/file.mp4"})
            return httpx.Response(200, content=b"mp4-bytes")

        seen: list[httpx.Request] = []

        def handler(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return route(request)

        client = client_with(httpx.MockTransport(handler), content_redirect_hosts=["cdn.test"])
        async with client.stream_content("video_up1", variant="video") as response:
            body = await response.aread()
        await client.aclose()
        assert body == b"mp4-bytes"
        assert "authorization" in seen[0].headers
        assert "authorization" not in seen[1].headers

    async def test_more_than_three_redirects_is_an_error(self) -> None:
        transport, seen = scripted(lambda _r: httpx.Response(302, headers={"location": "/v1/again"}))
        client = client_with(transport)
        with pytest.raises(UpstreamError):
            async with client.stream_content("video_up1", variant="video"):
                pass
        await client.aclose()
        assert len(seen) == 4

    @pytest.mark.parametrize(
        ("location", "allow_http"),
        [
            ("http://169.254.169.254/latest/meta-data/", True),  # not an allowed host
            ("https://evil.test/file.mp4", True),  # not an allowed host
            ("http://cdn.test/file.mp4", False),  # allowed host, but plain http outside dev mode
        ],
    )
    async def test_redirects_outside_the_allow_list_are_refused_before_connecting(
        self, location: str, allow_http: bool
    ) -> None:
        transport, seen = scripted(lambda _r: httpx.Response(302, headers={"location": location}))
        client = client_with(transport, allow_http=allow_http, content_redirect_hosts=["cdn.test"])
        with pytest.raises(UpstreamError) as caught:
            async with client.stream_content("video_up1", variant="video"):
                pass
        await client.aclose()
        assert caught.value.code == "redirect_not_allowed"
        assert len(seen) == 1  # the forbidden target was never contacted


class TestRetryAfter:
    @pytest.mark.parametrize(
        ("headers", "expected"),
        [({"retry-after-ms": "1500"}, 1.5), ({"retry-after": "2"}, 2.0), ({"retry-after": "999"}, 8.0), ({}, 0.25)],
    )
    def test_retry_after_is_read_and_capped(self, headers: dict[str, str], expected: float) -> None:
        assert retry_after_seconds(headers, default=0.25, cap=8.0) == expected


class TestCircuitBreakerAndThrottle:
    async def test_the_circuit_opens_after_consecutive_failures_and_fails_fast(self) -> None:
        transport, seen = scripted(answer(503, {"error": {"message": "down"}}))
        client = client_with(transport, read_attempts=1, breaker_failures=3, breaker_cooldown_seconds=60)
        for _ in range(3):
            with pytest.raises(UpstreamError):
                await client.retrieve_video("video_x")
        with pytest.raises(UpstreamUnavailable) as caught:
            await client.retrieve_video("video_x")
        await client.aclose()
        assert len(seen) == 3  # the fourth call never left the process
        assert caught.value.code == "upstream_circuit_open"
        assert int(caught.value.headers["retry-after"]) > 0

    async def test_after_the_cooldown_a_success_closes_the_circuit(self) -> None:
        transport, seen = scripted(answer(503, {"error": {"message": "down"}}), answer(200))
        client = client_with(transport, read_attempts=1, breaker_failures=1, breaker_cooldown_seconds=0.05)
        with pytest.raises(UpstreamError):
            await client.retrieve_video("video_x")
        with pytest.raises(UpstreamUnavailable):
            await client.retrieve_video("video_x")
        await asyncio.sleep(0.06)
        assert (await client.retrieve_video("video_x")).id == "video_up1"
        assert (await client.retrieve_video("video_x")).id == "video_up1"
        await client.aclose()
        assert len(seen) == 3

    async def test_an_upstream_429_pauses_our_calls_for_its_retry_after(self) -> None:
        transport, seen = scripted(answer(429, {"error": {"message": "slow"}}, {"retry-after": "30"}), answer(200))
        client = client_with(transport, create_attempts=1)
        with pytest.raises(RateLimited):
            await client.create_video(COMMAND)
        with pytest.raises(RateLimited) as caught:
            await client.create_video(COMMAND)
        await client.aclose()
        assert len(seen) == 1
        assert caught.value.headers["retry-after"] in {"29", "30"}

    async def test_4xx_answers_do_not_open_the_circuit(self) -> None:
        transport, seen = scripted(answer(400, {"error": {"message": "bad"}}))
        client = client_with(transport, read_attempts=1, breaker_failures=1)
        for _ in range(3):
            with pytest.raises(UpstreamRejected):
                await client.retrieve_video("video_x")
        await client.aclose()
        assert len(seen) == 3


class TestPooledConnections:
    async def test_idle_connections_expire_before_the_servers_keep_alive_timeout(self) -> None:
        # uvicorn closes idle connections after 5 s; a paid create sent down one it is closing ends as a
        # ReadError after the request may have left (a 502 the gateway must never repeat).
        client = UpstreamClient(UpstreamSettings(base_url="http://upstream.test/v1"))
        pool = client._http._transport._pool  # type: ignore[attr-defined]
        assert pool._keepalive_expiry == 2.0 < 5.0
        await client.aclose()
