"""`input_reference.image_url`: the callback destination guard, with public addresses allowed, and the fetch.

The vectors are the callback guard's own (tests/unit/callbacks/test_destinations.py), written with https so
each refusal is about the address, not the scheme. Nothing refused is ever connected to: the transport
records every request it is given.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest

from app.core import outbound_urls
from app.core.config import ApiSettings, CallbackSettings
from app.core.errors import GatewayError, InvalidRequest, PayloadTooLarge
from app.core.outbound_urls import DestinationRefused
from app.upstream.image_url import ImageFetcher, image_url_policy
from tests.support.images import image_bytes
from tests.unit.callbacks.test_destinations import ADDRESS_VECTORS, METADATA_VECTORS, NON_CANONICAL

NOTHING_LISTED = ApiSettings()
NOT_ALLOWED = "not in the operator's image_url allow-list"
PNG = image_bytes(64, 36)


def https(url: str) -> str:
    return url.replace("http://", "https://", 1)


def refusal(url: str, settings: ApiSettings = NOTHING_LISTED) -> str:
    with pytest.raises(DestinationRefused) as caught:
        outbound_urls.check_with(url, image_url_policy(settings))
    return str(caught.value)


class TestGuard:
    @pytest.mark.parametrize(("url", "reason"), [vector for vector in ADDRESS_VECTORS if vector[1] != "public"])
    def test_a_non_public_address_is_refused_unless_allow_listed(self, url: str, reason: str) -> None:
        message = refusal(url)
        assert reason in message
        assert message.startswith("input_reference.image_url")
        if "credentials" not in reason:
            assert NOT_ALLOWED in message

    @pytest.mark.parametrize("url", ["https://8.8.8.8/a.png", "https://[2606:4700:4700::1111]:8443/a.png"])
    def test_a_public_address_passes_without_being_listed(self, url: str) -> None:
        outbound_urls.check_with(url, image_url_policy(NOTHING_LISTED))

    @pytest.mark.parametrize(
        "url",
        [
            "https://[::7f00:1]/",
            "https://[::a00:1]/",
            "https://192.0.2.1/",
            "https://[2001:db8::1]/",
            "https://[100::1]/",
        ],
        ids=["ipv4-compatible loopback", "ipv4-compatible private", "test-net", "documentation", "discard"],
    )
    def test_special_purpose_addresses_python_calls_global_are_not_public(self, url: str) -> None:
        assert NOT_ALLOWED in refusal(url)

    @pytest.mark.parametrize("url", [https(url) for url in NON_CANONICAL])
    def test_non_canonical_ips_are_refused_even_when_allow_listed(self, url: str) -> None:
        assert "non-canonical" in refusal(url, ApiSettings(image_url_allowed_destinations=["0.0.0.0/0"]))

    @pytest.mark.parametrize(("url", "allowed"), [(https(url), allowed) for url, allowed in METADATA_VECTORS])
    def test_metadata_is_refused_even_inside_an_allow_listed_cidr(self, url: str, allowed: str) -> None:
        assert "cloud metadata" in refusal(url, ApiSettings(image_url_allowed_destinations=[allowed]))

    @pytest.mark.parametrize("url", ["http://8.8.8.8/a.png", "http://img.test/a.png", "ftp://8.8.8.8/a.png"])
    def test_only_https_is_taken(self, url: str) -> None:
        assert "use https" in refusal(url, ApiSettings(image_url_allowed_destinations=["img.test"]))

    def test_an_allow_listed_private_network_is_reachable(self) -> None:
        outbound_urls.check_with(
            "https://10.1.2.3/a.png", image_url_policy(ApiSettings(image_url_allowed_destinations=["10.0.0.0/8"]))
        )

    def test_a_name_resolving_to_a_public_address_passes(self, resolver: dict[str, list[str]]) -> None:
        resolver["img.test"] = ["93.184.216.34"]
        outbound_urls.check_with("https://img.test/a.png", image_url_policy(NOTHING_LISTED))

    @pytest.mark.parametrize(
        ("addresses", "named"),
        [(["127.0.0.1"], "127.0.0.1"), (["93.184.216.34", "10.0.0.7"], "10.0.0.7"), (["::1"], "::1")],
        ids=["loopback", "one of several", "ipv6 loopback"],
    )
    def test_a_name_with_any_non_public_address_is_refused(
        self, resolver: dict[str, list[str]], addresses: list[str], named: str
    ) -> None:
        resolver["img.test"] = addresses
        assert f"resolves to {named}" in refusal("https://img.test/a.png")

    def test_an_unresolvable_name_is_refused(self, resolver: dict[str, list[str]]) -> None:
        assert "could not be resolved" in refusal("https://nowhere.test/a.png")

    def test_callbacks_keep_their_default_deny(self) -> None:
        # The generalisation must not let a callback reach a public address the operator did not list.
        with pytest.raises(DestinationRefused, match="callback allow-list"):
            outbound_urls.check_url("https://8.8.8.8/hook", CallbackSettings())


def fetcher() -> tuple[ImageFetcher, list[httpx.Request]]:
    """A fetcher whose transport serves a PNG and records every request it is given."""
    # `stream=`, as a real transport answers: `content=` would be read already, and the fetch reads it raw.
    transport, seen = recording(httpx.Response(200, stream=httpx.ByteStream(PNG)))
    return ImageFetcher(NOTHING_LISTED, transport=transport), seen


def recording(respond: httpx.Response | Exception) -> tuple[httpx.MockTransport, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def serve(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if isinstance(respond, Exception):
            raise respond
        return respond

    return httpx.MockTransport(serve), seen


async def fetch_error(images: ImageFetcher, url: str = "https://img.test/a.png") -> GatewayError:
    with pytest.raises(GatewayError) as caught:
        await images.fetch(url, max_bytes=1024 * 1024)
    assert caught.value.param == "input_reference.image_url"
    return caught.value


class TestFetch:
    async def test_the_checked_address_is_connected_to_with_the_name_as_host_and_sni(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["img.test"] = ["93.184.216.34"]
        images, seen = fetcher()
        assert await images.fetch("https://img.test:8443/a/b.png?sig=1", max_bytes=1024 * 1024) == PNG
        assert [str(request.url) for request in seen] == ["https://93.184.216.34:8443/a/b.png?sig=1"]
        assert seen[0].headers["host"] == "img.test:8443"
        assert seen[0].extensions["sni_hostname"] == "img.test"
        assert "authorization" not in seen[0].headers

    @pytest.mark.parametrize("url", ["https://127.0.0.1/a.png", "https://[::1]/a.png", "https://169.254.169.254/"])
    async def test_a_refused_destination_is_never_connected_to(self, url: str) -> None:
        images, seen = fetcher()
        error = await fetch_error(images, url)
        assert isinstance(error, InvalidRequest) and error.code == "invalid_image_url"
        assert seen == []

    async def test_a_name_that_rebinds_to_loopback_is_never_connected_to(self, resolver: dict[str, list[str]]) -> None:
        resolver["img.test"] = ["127.0.0.1"]
        images, seen = fetcher()
        assert (await fetch_error(images)).code == "invalid_image_url"
        assert seen == []

    @pytest.mark.parametrize(
        "failure",
        [
            httpx.ConnectError("[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed (_ssl.c:1006)"),
            httpx.ConnectError("[Errno 111] Connection refused"),
            httpx.ReadTimeout("The read operation timed out"),
            httpx.RemoteProtocolError("Server disconnected without sending a response."),
        ],
        ids=["tls", "refused", "timeout", "protocol"],
    )
    async def test_a_network_failure_is_answered_in_our_words_only(
        self, resolver: dict[str, list[str]], failure: Exception
    ) -> None:
        resolver["img.test"] = ["93.184.216.34"]
        transport, _ = recording(failure)
        error = await fetch_error(ImageFetcher(NOTHING_LISTED, transport=transport))
        assert (error.status_code, error.code) == (400, "image_url_unreachable")
        assert error.message == "Could not download 'input_reference.image_url'."

    @pytest.mark.parametrize("status", [301, 302, 307, 308])
    async def test_a_redirect_is_not_followed(self, resolver: dict[str, list[str]], status: int) -> None:
        resolver["img.test"] = ["93.184.216.34"]
        transport, seen = recording(httpx.Response(status, headers={"location": "https://127.0.0.1/"}))
        error = await fetch_error(ImageFetcher(NOTHING_LISTED, transport=transport))
        assert error.code == "image_url_unreachable"
        assert "redirect" in error.message
        assert len(seen) == 1

    async def test_an_error_answer_names_only_its_status(self, resolver: dict[str, list[str]]) -> None:
        resolver["img.test"] = ["93.184.216.34"]
        transport, _ = recording(httpx.Response(404, text="<html>secret internal page</html>"))
        error = await fetch_error(ImageFetcher(NOTHING_LISTED, transport=transport))
        assert error.message == "Could not download 'input_reference.image_url': the server answered HTTP 404."

    async def test_a_declared_length_over_the_cap_is_413_before_reading(self, resolver: dict[str, list[str]]) -> None:
        resolver["img.test"] = ["93.184.216.34"]
        transport, _ = recording(httpx.Response(200, headers={"content-length": str(10**12)}, content=b""))
        error = await fetch_error(ImageFetcher(NOTHING_LISTED, transport=transport))
        assert isinstance(error, PayloadTooLarge)

    async def test_a_body_over_the_cap_is_413_whatever_its_length_header(self, resolver: dict[str, list[str]]) -> None:
        resolver["img.test"] = ["93.184.216.34"]

        class Endless(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                while True:
                    yield b"\0" * 65536

        transport, _ = recording(httpx.Response(200, stream=Endless()))
        with pytest.raises(PayloadTooLarge):
            await ImageFetcher(NOTHING_LISTED, transport=transport).fetch("https://img.test/a.png", max_bytes=100_000)

    async def test_a_slow_server_is_cut_off_at_the_time_bound(self, resolver: dict[str, list[str]]) -> None:
        resolver["img.test"] = ["93.184.216.34"]

        class Trickle(httpx.AsyncByteStream):
            async def __aiter__(self) -> AsyncIterator[bytes]:
                while True:
                    await asyncio.sleep(0.05)
                    yield b"\0"

        transport, _ = recording(httpx.Response(200, stream=Trickle()))
        settings = ApiSettings(image_url_timeout_seconds=0.3)
        error = await fetch_error(ImageFetcher(settings, transport=transport))
        assert error.code == "image_url_unreachable"
