"""docs/reliability.md row 54 through the real API: a create whose callback_url is not allowed is a 400 saying why,
refused before anything is paid for upstream; standing endpoints get the same check."""

from __future__ import annotations

import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest

from app.core import outbound_urls
from app.core.outbound_urls import IPAddress
from app.models import Video
from tests.support.callbacks import CallbackStack, Receiver, StackFactory, callback_settings
from tests.support.transports import CountingTransport

NOT_ALLOWED = "not in the operator's callback allow-list"


@pytest.fixture(scope="module")
async def strict_stack(make_stack: StackFactory) -> AsyncIterator[CallbackStack]:
    """Allows only loopback 127.0.0.1 and the link-local /16 (to show metadata stays refused inside it)."""
    async with make_stack(
        callback_settings(allowed_destinations=["127.0.0.1/32", "169.254.0.0/16", "fd00::/8"])
    ) as stack:
        yield stack


@pytest.fixture(scope="module")
async def client(strict_stack: CallbackStack) -> AsyncIterator[httpx.AsyncClient]:
    _, client = await strict_stack.new_caller()
    async with client:
        yield client


async def create(client: httpx.AsyncClient, callback_url: str) -> httpx.Response:
    return await client.post("/v1/videos", json={"prompt": "a boat", "callback_url": callback_url})


REFUSED = [
    ("https://127.0.0.2", NOT_ALLOWED),
    ("https://[::1]:9876", "loopback (::1)"),
    ("https://1:2@[::1]:9876", "credentials"),
    ("https://[::ffff:7f00:2]", "loopback"),
    ("https://10.0.0.1/hook", "private (10.0.0.0/8)"),
    ("https://172.16.5.4/hook", "private (172.16.0.0/12)"),
    ("https://192.168.0.10/hook", "private (192.168.0.0/16)"),
    ("https://100.64.1.1/hook", "carrier-grade NAT"),
    ("https://0.0.0.0/hook", "never allowed"),
    ("https://224.0.0.1/hook", "never allowed"),
    ("https://240.0.0.1/hook", "never allowed"),
    ("https://198.18.0.1/hook", "benchmarking"),
    ("https://[fe80::1]/hook", "link-local (fe80::/10)"),
    ("https://[64:ff9b::a00:1]/hook", "NAT64"),
    ("https://[2002:a00:1::]/hook", "6to4"),
    ("http://2130706433/hook", "non-canonical"),
    ("http://0177.0.0.1/hook", "non-canonical"),
    ("http://0x7f000001/hook", "non-canonical"),
    ("http://127.1/hook", "non-canonical"),
    ("ftp://127.0.0.1/hook", "scheme 'ftp'"),
    ("file:///etc/passwd", "scheme 'file'"),
    ("gopher://127.0.0.1:70/", "scheme 'gopher'"),
    # Inside an allowed CIDR, but metadata: refused all the same.
    ("http://169.254.169.254/latest/meta-data/", "cloud metadata"),
    ("http://[fd00:ec2::254]/latest/", "cloud metadata"),
    ("http://metadata.google.internal/computeMetadata/v1/", "cloud metadata"),
]


class TestCreateRefusesForbiddenCallbacks:
    @pytest.mark.parametrize(("url", "reason"), REFUSED)
    async def test_refused_with_400_saying_why_before_any_upstream_call(
        self, client: httpx.AsyncClient, upstream_transport: CountingTransport, url: str, reason: str
    ) -> None:
        creates_before = upstream_transport.count("POST", "/v1/videos")
        listed_before = (await client.get("/v1/videos")).json()["data"]
        response = await create(client, url)
        assert response.status_code == 400, response.text
        error = response.json()["error"]
        assert error["param"] == "callback_url"
        assert error["code"] == "invalid_callback_url"
        assert error["type"] == "invalid_request_error"
        assert reason in error["message"], error["message"]
        assert upstream_transport.count("POST", "/v1/videos") == creates_before
        assert (await client.get("/v1/videos")).json()["data"] == listed_before

    async def test_an_allowed_callback_is_accepted_and_stored(
        self, client: httpx.AsyncClient, strict_stack: CallbackStack, receiver: Receiver
    ) -> None:
        response = await create(client, receiver.url())
        assert response.status_code == 200, response.text
        async with strict_stack.database.sessionmaker() as session:
            video = await session.get(Video, response.json()["id"])
            assert video is not None and video.callback_url == receiver.url()

    async def test_a_name_resolving_to_a_private_address_outside_the_allow_list_is_refused(
        self, client: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        def resolve(host: str) -> list[IPAddress]:
            assert host == "billing.internal"
            return [ipaddress.ip_address("10.20.30.40")]

        monkeypatch.setattr(outbound_urls, "resolve", resolve)
        response = await create(client, "http://billing.internal:8080/video-done")
        assert response.status_code == 400
        message = response.json()["error"]["message"]
        assert "resolves to 10.20.30.40" in message and NOT_ALLOWED in message


class TestStandingEndpointsAreCheckedToo:
    async def test_a_forbidden_endpoint_is_refused_with_400(self, client: httpx.AsyncClient) -> None:
        response = await client.post("/v1/callbacks/endpoints", json={"url": "http://169.254.169.254/"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["param"] == "url" and "cloud metadata" in error["message"]
        assert (await client.get("/v1/callbacks/endpoints")).json()["data"] == []
