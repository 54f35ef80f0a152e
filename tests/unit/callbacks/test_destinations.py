"""SSRF rules for callback URLs (docs/reliability.md row 54): every vector refused, with a reason that names it."""

from __future__ import annotations

import pytest

from app.core import outbound_urls
from app.core.config import CallbackSettings
from app.core.outbound_urls import DestinationRefused

NOT_ALLOWED = "not in the operator's callback allow-list"
# Allows only a network none of the vectors below is in, so each refusal is about the vector itself.
ELSEWHERE = CallbackSettings(allowed_destinations=["93.184.216.0/24", "hooks.internal"])


# The vectors are module constants so that other guards built on this one (image URLs) reuse them.
# (url, the kind of address named in the refusal)
ADDRESS_VECTORS: list[tuple[str, str]] = [
    ("https://127.0.0.1", "loopback"),
    ("https://127.0.0.1:443/hook", "loopback"),
    ("https://[::1]:9876", "loopback (::1)"),
    ("https://1:2@[::1]:9876", "credentials"),
    ("https://user@hooks.internal/", "credentials"),
    ("https://[::ffff:7f00:1]", "loopback"),
    ("https://[::ffff:127.0.0.1]/", "loopback"),
    ("https://10.1.2.3", "private (10.0.0.0/8)"),
    ("https://172.16.0.1", "private (172.16.0.0/12)"),
    ("https://172.31.255.254", "private (172.16.0.0/12)"),
    ("https://192.168.1.1", "private (192.168.0.0/16)"),
    ("https://169.254.1.1", "link-local (169.254.0.0/16)"),
    ("https://100.64.0.1", "carrier-grade NAT"),
    ("https://198.18.0.1", "benchmarking"),
    ("https://198.19.255.1", "benchmarking"),
    ("https://[fd00::1]", "unique-local"),
    ("https://[fc00::1]", "unique-local"),
    ("https://[fe80::1]", "link-local (fe80::/10)"),
    ("https://[64:ff9b::a00:1]", "NAT64"),
    ("https://[2002:a00:1::]", "6to4"),
    ("https://8.8.8.8", "public"),
]
# IPs written in forms some resolvers read as another address.
NON_CANONICAL: list[str] = [
    "http://2130706433/",  # decimal 127.0.0.1
    "http://0x7f000001/",  # hex
    "http://0177.0.0.1/",  # octal first octet
    "http://0x7f.0.0.1/",  # hex first octet
    "http://127.1/",  # shortened
    "http://10.0.0.011/",  # leading zero (octal to inet_aton)
    "http://167772161/",  # decimal 10.0.0.1
    "http://93.184.216.5./",  # trailing dot
]
# (url, a CIDR that contains it: metadata is refused even there)
METADATA_VECTORS: list[tuple[str, str]] = [
    ("http://169.254.169.254/latest/meta-data/", "169.254.0.0/16"),
    ("http://169.254.170.2/v2/credentials", "169.254.0.0/16"),
    ("http://[fd00:ec2::254]/latest/", "fd00::/8"),
    ("http://100.100.100.200/latest/", "100.64.0.0/10"),
    ("http://[::ffff:169.254.169.254]/", "0.0.0.0/0"),
    ("http://[64:ff9b::a9fe:a9fe]/", "::/0"),
    ("http://[2002:a9fe:a9fe::]/", "::/0"),
]


def refusal(url: str, settings: CallbackSettings = ELSEWHERE) -> str:
    with pytest.raises(DestinationRefused) as caught:
        outbound_urls.check_url(url, settings)
    return str(caught.value)


class TestSvixVectors:
    @pytest.mark.parametrize(("url", "reason"), ADDRESS_VECTORS)
    def test_address_outside_the_allow_list_is_refused_with_its_kind(self, url: str, reason: str) -> None:
        message = refusal(url)
        assert reason in message
        if "credentials" not in reason:
            assert NOT_ALLOWED in message

    @pytest.mark.parametrize(
        "url",
        [
            "https://0.0.0.0/",
            "https://0.1.2.3/",
            "https://224.0.0.1/",
            "https://239.255.255.250/",
            "https://240.0.0.1/",
            "https://255.255.255.255/",
            "https://[::]/",
            "https://[ff02::1]/",
        ],
    )
    def test_addresses_that_are_never_a_destination_are_refused_even_when_allow_listed(self, url: str) -> None:
        everything = CallbackSettings(allowed_destinations=["0.0.0.0/0", "::/0"])
        assert "never allowed" in refusal(url, everything)


class TestNonCanonicalIPs:
    @pytest.mark.parametrize("url", NON_CANONICAL)
    def test_is_refused_even_when_the_address_it_means_is_allowed(self, url: str) -> None:
        allowed = CallbackSettings(allowed_destinations=["0.0.0.0/0"])
        assert "non-canonical" in refusal(url, allowed)


class TestSchemesAndShapes:
    @pytest.mark.parametrize(
        "url",
        [
            "ftp://93.184.216.5/",
            "file:///etc/passwd",
            "gopher://93.184.216.5:70/",
            "javascript:alert(1)",
            "ws://93.184.216.5/",
            "//93.184.216.5/hook",
            "93.184.216.5/hook",
        ],
    )
    def test_only_http_and_https_are_accepted(self, url: str) -> None:
        assert "scheme" in refusal(url)

    @pytest.mark.parametrize(
        ("url", "reason"),
        [
            ("https://[fe80::1%25eth0]/", "zone id"),
            ("https://[::1/", "not a valid URL"),
            ("https://hooks.internal:99999/", "invalid port"),
            ("https://hooks.internal:0/", "invalid port"),
            ("https://hooks..internal/", "not a valid host name"),
            ("https://hooks.internal/\x00", "control characters"),
            ("https://hooks.internal\\@evil.test/", "backslashes"),
            ("https://hööks.internal/", "punycode"),
            ("https:///nohost", "no host"),
        ],
    )
    def test_malformed_urls_are_refused(self, url: str, reason: str) -> None:
        assert reason in refusal(url)

    def test_plain_http_to_a_public_address_is_refused_even_when_allow_listed(self) -> None:
        assert "must use https" in refusal("http://93.184.216.5/hook")
        outbound_urls.check_url("https://93.184.216.5/hook", ELSEWHERE)

    def test_plain_http_can_be_switched_off(self) -> None:
        settings = CallbackSettings(allowed_destinations=["10.0.0.0/8", "hooks.internal"], allow_http=False)
        assert "must use https" in refusal("http://10.0.0.5/hook", settings)
        assert "must use https" in refusal("http://hooks.internal/hook", settings)
        outbound_urls.check_url("https://10.0.0.5/hook", settings)


class TestMetadataIsAlwaysRefused:
    @pytest.mark.parametrize(("url", "allowed"), METADATA_VECTORS)
    def test_metadata_addresses_are_refused_inside_an_allowed_cidr(self, url: str, allowed: str) -> None:
        assert "cloud metadata" in refusal(url, CallbackSettings(allowed_destinations=[allowed]))

    @pytest.mark.parametrize(
        "host", ["metadata.google.internal", "metadata.google.internal.", "metadata", "metadata.goog"]
    )
    def test_metadata_names_are_refused_even_when_allow_listed_by_name(self, host: str) -> None:
        settings = CallbackSettings(allowed_destinations=[host, "0.0.0.0/0"])
        assert "cloud metadata" in refusal(f"http://{host}/computeMetadata/v1/", settings)

    def test_a_name_resolving_to_metadata_is_refused(self, resolver: dict[str, list[str]]) -> None:
        resolver["innocent.internal"] = ["169.254.169.254"]
        settings = CallbackSettings(allowed_destinations=["169.254.0.0/16"])
        assert "cloud metadata" in refusal("http://innocent.internal/", settings)


class TestResolution:
    def test_a_name_resolving_to_a_private_address_outside_the_allow_list_is_refused(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["svc.internal"] = ["192.168.7.7"]
        message = refusal("http://svc.internal/hook", CallbackSettings(allowed_destinations=["10.0.0.0/8"]))
        assert "resolves to 192.168.7.7" in message and NOT_ALLOWED in message

    def test_a_name_with_any_address_outside_the_allow_list_is_refused(self, resolver: dict[str, list[str]]) -> None:
        resolver["mixed.internal"] = ["10.0.0.7", "127.0.0.1"]
        message = refusal("http://mixed.internal/hook", CallbackSettings(allowed_destinations=["10.0.0.0/8"]))
        assert "resolves to 127.0.0.1" in message

    def test_a_name_whose_addresses_are_all_allowed_passes(self, resolver: dict[str, list[str]]) -> None:
        resolver["svc.internal"] = ["10.0.0.7", "10.0.0.8"]
        outbound_urls.check_url("http://svc.internal:8080/hook", CallbackSettings(allowed_destinations=["10.0.0.0/8"]))

    def test_an_unresolvable_name_is_refused(self, resolver: dict[str, list[str]]) -> None:
        assert "could not be resolved" in refusal(
            "http://nowhere.internal/", CallbackSettings(allowed_destinations=["10.0.0.0/8"])
        )

    def test_a_name_not_allow_listed_is_refused_without_a_lookup_when_no_cidr_is_allowed(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["svc.internal"] = ["10.0.0.7"]
        message = refusal("http://svc.internal/", CallbackSettings(allowed_destinations=["other.internal"]))
        assert NOT_ALLOWED in message

    def test_nothing_is_allowed_by_default(self) -> None:
        assert NOT_ALLOWED in refusal("https://10.0.0.1/", CallbackSettings())

    def test_an_allow_listed_name_is_accepted_at_create_without_a_lookup(self, resolver: dict[str, list[str]]) -> None:
        outbound_urls.check_url("http://hooks.internal:8080/cb", ELSEWHERE)


class TestPinning:
    async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host_and_sni(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["svc.internal"] = ["10.0.0.7"]
        target = await outbound_urls.pin(
            "https://svc.internal:8443/hook?x=1", CallbackSettings(allowed_destinations=["10.0.0.0/8"])
        )
        assert target.url == "https://10.0.0.7:8443/hook?x=1"
        assert target.host_header == "svc.internal:8443"
        assert target.sni_hostname == "svc.internal"
        assert target.address == "10.0.0.7"

    async def test_ipv6_addresses_are_bracketed_and_default_ports_dropped(self, resolver: dict[str, list[str]]) -> None:
        resolver["v6.internal"] = ["fd12::7"]
        target = await outbound_urls.pin(
            "http://v6.internal/hook", CallbackSettings(allowed_destinations=["fd12::/16"])
        )
        assert target.url == "http://[fd12::7]/hook"
        assert target.host_header == "v6.internal"
        assert target.sni_hostname is None

    async def test_a_name_that_now_resolves_elsewhere_is_refused(self, resolver: dict[str, list[str]]) -> None:
        settings = CallbackSettings(allowed_destinations=["10.0.0.0/8"])
        resolver["svc.internal"] = ["10.0.0.7"]
        outbound_urls.check_url("http://svc.internal/hook", settings)
        resolver["svc.internal"] = ["127.0.0.1"]
        with pytest.raises(DestinationRefused, match=r"resolves to 127\.0\.0\.1"):
            await outbound_urls.pin("http://svc.internal/hook", settings)

    async def test_an_allow_listed_name_is_still_checked_for_metadata_at_delivery(
        self, resolver: dict[str, list[str]]
    ) -> None:
        resolver["hooks.internal"] = ["169.254.169.254"]
        with pytest.raises(DestinationRefused, match="cloud metadata"):
            await outbound_urls.pin("http://hooks.internal/hook", ELSEWHERE)
