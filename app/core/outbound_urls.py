"""Outbound URLs a caller chose, checked before the gateway sends anything there: URL rules, the operator's
allow-list, and IP pinning against DNS rebinding (SSRF protection).

One guard serves every request the gateway makes to a URL a caller chose: callbacks (app/callbacks), and the
`input_reference.image_url` the video service fetches (`app.upstream.image_url`). It lives in core, with
nothing but settings below it, so those two domains share it without importing each other. Each kind is a
`Policy` (the label its refusals name, its allow-list, its schemes, and whether public addresses pass
unlisted); `check_url` / `pin` are the callbacks' policy, `check_with` / `pin_with` take any. What follows
describes the callbacks' policy; image URLs differ only in being https-only and letting public unicast
addresses through without being listed (every non-public address still needs the operator's allow-list).

Default deny. A destination is allowed only if its host is named in `allowed_destinations`, or every
address it resolves to lies in an allowed CIDR. Cloud metadata endpoints (and addresses that are never a
unicast destination: 0.0.0.0/8, ::, multicast, 240/4) are refused even inside an allowed CIDR or under an
allowed name. IPs must be written canonically (no decimal, octal or hex forms, no IPv6 zone ids); URLs
carry no credentials; the scheme is https, or http when every address is private (`allow_http`), since
internal services commonly speak plain http inside a cluster. Any port is accepted: the allow-list, not
the port, is what bounds the destinations (internal services seldom listen on 443).

The check runs twice: at create (so a bad URL is refused at once, with the reason) and again at every
delivery attempt, where the name is resolved anew and the checked address is the one connected to
(`pin`), so a name that re-resolves to a forbidden address in between (DNS rebinding) reaches nothing.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from app.core.config import CallbackSettings

CALLBACK_LABEL = "callback_url"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MAX_URL_LENGTH = 2048

# Instance metadata services: credentials live there. Refused whatever the allow-list says.
METADATA_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr)
    for cidr in (
        "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack, DigitalOcean, Oracle
        "169.254.170.2/32",  # AWS ECS task metadata
        "169.254.169.253/32",  # AWS VPC DNS
        "100.100.100.200/32",  # Alibaba Cloud
        "192.0.0.192/32",  # Oracle Cloud (classic)
        "fd00:ec2::254/128",  # AWS IMDS over IPv6
        "fd00:ec2::253/128",  # AWS DNS over IPv6
    )
)
METADATA_NAMES = frozenset(
    {
        "metadata",
        "metadata.google.internal",
        "metadata.goog",
        "metadata.azure.internal",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.tencentyun.com",
    }
)
# Never a unicast destination (connecting to 0.0.0.0 reaches the local host on Linux).
UNUSABLE_NETWORKS: tuple[IPNetwork, ...] = tuple(
    ipaddress.ip_network(cidr) for cidr in ("0.0.0.0/8", "224.0.0.0/4", "240.0.0.0/4", "::/128", "ff00::/8")
)

# For the refusal message: what kind of address this is (first match wins).
ADDRESS_KINDS: tuple[tuple[IPNetwork, str], ...] = tuple(
    (ipaddress.ip_network(cidr), kind)
    for cidr, kind in (
        ("0.0.0.0/8", "a 'this network' (0.0.0.0/8)"),
        ("10.0.0.0/8", "a private (10.0.0.0/8)"),
        ("100.64.0.0/10", "a carrier-grade NAT (100.64.0.0/10)"),
        ("127.0.0.0/8", "a loopback (127.0.0.0/8)"),
        ("169.254.0.0/16", "a link-local (169.254.0.0/16)"),
        ("172.16.0.0/12", "a private (172.16.0.0/12)"),
        ("192.0.0.0/24", "an IETF protocol (192.0.0.0/24)"),
        ("192.168.0.0/16", "a private (192.168.0.0/16)"),
        ("198.18.0.0/15", "a benchmarking (198.18.0.0/15)"),
        ("224.0.0.0/4", "a multicast (224.0.0.0/4)"),
        ("240.0.0.0/4", "a reserved (240.0.0.0/4)"),
        ("::1/128", "a loopback (::1)"),
        ("::/128", "an unspecified (::)"),
        ("64:ff9b::/96", "a NAT64 (64:ff9b::/96)"),
        ("2001::/32", "a Teredo (2001::/32)"),
        ("2002::/16", "a 6to4 (2002::/16)"),
        ("fc00::/7", "a unique-local (fc00::/7)"),
        ("fe80::/10", "a link-local (fe80::/10)"),
        ("ff00::/8", "a multicast (ff00::/8)"),
    )
)

# IPv6 global unicast: outside it (IPv4-compatible ::/96, say) nothing is public, whatever `is_global` says.
GLOBAL_UNICAST_V6 = ipaddress.IPv6Network("2000::/3")

HOSTNAME_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# A last label like `1`, `0177` or `0x7f` makes the host an IP in some notation (browsers, inet_aton).
NUMERIC_LABEL = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class DestinationRefused(Exception):
    """A URL or its resolved address is not allowed; the message says why (safe to show the caller)."""


@dataclass(frozen=True)
class Destination:
    """A syntactically acceptable callback URL, taken apart."""

    scheme: str
    host: str  # lower-case name, or the IP's canonical text
    port: int
    ip: IPAddress | None  # set when the URL names an IP literal
    netloc: str  # host[:port] as the Host header wants it
    target: str  # path and query

    @property
    def default_port(self) -> bool:
        return self.port == (443 if self.scheme == "https" else 80)


@dataclass(frozen=True)
class PinnedTarget:
    """Where to connect: a URL with the checked IP in place of the name, plus the name for Host and SNI."""

    url: str
    host_header: str
    sni_hostname: str | None
    address: str


@dataclass(frozen=True)
class AllowList:
    names: frozenset[str]
    networks: tuple[IPNetwork, ...]

    @classmethod
    def parse(cls, entries: list[str]) -> AllowList:
        names: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower().rstrip(".")
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                names.add(entry)
        return cls(frozenset(names), tuple(networks))

    def covers(self, ip: IPAddress) -> bool:
        return any(ip.version == network.version and ip in network for network in self.networks)


@dataclass(frozen=True)
class Policy:
    """Which destinations one kind of caller-chosen URL may reach, and the words its refusals use."""

    label: str  # what refusals call the URL: "callback_url"
    allow: AllowList
    allow_list: str  # how refusals name the allow-list: "callback allow-list (VG_CALLBACKS__ALLOWED_DESTINATIONS)"
    schemes: tuple[str, ...] = ("https", "http")
    allow_http: bool = True  # plain http, to private allow-listed addresses only
    allow_public: bool = False  # public unicast addresses pass without being listed

    @classmethod
    def for_callbacks(cls, settings: CallbackSettings) -> Policy:
        return cls(
            label=CALLBACK_LABEL,
            allow=AllowList.parse(settings.allowed_destinations),
            allow_list="callback allow-list (VG_CALLBACKS__ALLOWED_DESTINATIONS)",
            allow_http=settings.allow_http,
        )


def resolve(host: str) -> list[IPAddress]:
    """The host's A/AAAA addresses, in resolver order, without duplicates (tests replace this function)."""
    infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    found: list[IPAddress] = []
    for *_, sockaddr in infos:
        ip = normalise(ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0]))
        if ip not in found:
            found.append(ip)
    return found


def normalise(ip: IPAddress) -> IPAddress:
    """IPv4-mapped IPv6 (`::ffff:7f00:1`) is the IPv4 address it maps; judge it as that."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def kind_of(ip: IPAddress) -> str:
    for network, kind in ADDRESS_KINDS:
        if ip.version == network.version and ip in network:
            return kind
    return "a public" if _public_unicast(ip) else "a special-purpose"


def _public_unicast(ip: IPAddress) -> bool:
    # Python 3.11's `is_global` is true of some reserved IPv6 space (::7f00:1 maps 127.0.0.1), so reserved
    # and non-global-unicast IPv6 addresses are not public whatever it says.
    if not ip.is_global or ip.is_reserved or ip.is_multicast:
        return False
    return isinstance(ip, ipaddress.IPv4Address) or ip in GLOBAL_UNICAST_V6


def is_public(ip: IPAddress) -> bool:
    """A public unicast address: none of the special kinds above (6to4 and NAT64 carry an IPv4 address)."""
    return kind_of(ip) == "a public"


def parse(url: str, *, label: str = CALLBACK_LABEL, schemes: tuple[str, ...] = ("https", "http")) -> Destination:
    """Take a URL apart, refusing what no allow-list could make safe; `label` names it in refusals."""
    if len(url) > MAX_URL_LENGTH:
        raise DestinationRefused(f"{label} is longer than {MAX_URL_LENGTH} characters")
    if not url.isascii() or any(ord(char) <= 0x20 or ord(char) == 0x7F for char in url) or "\\" in url:
        raise DestinationRefused(
            f"{label} must be plain ASCII without spaces, control characters or backslashes "
            "(write international host names in punycode)"
        )
    try:
        parts = urlsplit(url)
    except ValueError:
        raise DestinationRefused(f"{label} is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes:
        raise DestinationRefused(
            f"{label} scheme '{parts.scheme or '(none)'}' is not allowed; use {' or '.join(schemes)}"
        )
    if "@" in parts.netloc:
        raise DestinationRefused(f"{label} must not carry credentials (user:password@)")
    host = _host_of(parts, label)
    try:
        port = parts.port
    except ValueError:
        raise DestinationRefused(f"{label} has an invalid port") from None
    if port == 0:
        raise DestinationRefused(f"{label} has an invalid port")
    ip = _ip_literal(parts, host, label)
    if ip is None:
        host = host.removesuffix(".")
    shown_host = f"[{ip}]" if isinstance(ip, ipaddress.IPv6Address) and parts.netloc.startswith("[") else host
    netloc = shown_host if port is None else f"{shown_host}:{port}"
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(
        scheme=scheme,
        host=str(ip) if ip is not None else host,
        port=port if port is not None else (443 if scheme == "https" else 80),
        ip=normalise(ip) if ip is not None else None,
        netloc=netloc,
        target=target,
    )


def _host_of(parts: SplitResult, label: str) -> str:
    netloc = parts.netloc
    if not netloc:
        raise DestinationRefused(f"{label} has no host")
    host = (parts.hostname or "").lower()
    if not host:
        raise DestinationRefused(f"{label} has no host")
    return host


def _ip_literal(parts: SplitResult, host: str, label: str) -> IPAddress | None:
    """The IP a host names, accepted only in canonical form; None for a host name."""
    if parts.netloc.startswith("["):
        if "%" in host:
            raise DestinationRefused(f"{label} must not use an IPv6 zone id")
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            raise DestinationRefused(f"{label} has an invalid IPv6 address") from None
    labels = host.split(".")
    if NUMERIC_LABEL.match(labels[-1] or (labels[-2] if len(labels) > 1 else "")):
        try:
            return ipaddress.IPv4Address(host)
        except ValueError:
            raise DestinationRefused(
                f"{label} host '{host}' looks like an IP address in a non-canonical form "
                "(decimal, octal, hex or shortened); write IPv4 addresses as four decimal numbers"
            ) from None
    name = host.removesuffix(".")
    if len(name) > 253 or not all(HOSTNAME_LABEL.match(part) for part in name.split(".")):
        raise DestinationRefused(f"{label} host '{host}' is not a valid host name")
    return None


def check_addresses(destination: Destination, addresses: list[IPAddress], policy: Policy) -> None:
    """Every address must be usable, not metadata, and allowed (by the host's name, a CIDR, or, where the
    policy says so, by being public)."""
    label = policy.label
    if not addresses:
        raise DestinationRefused(f"{label} host '{destination.host}' has no addresses")
    named = destination.ip is None and destination.host in policy.allow.names
    for ip in addresses:
        if any(ip.version == network.version and ip in network for network in METADATA_NETWORKS):
            raise DestinationRefused(f"{label} reaches a cloud metadata address ({ip}), which is never allowed")
        embedded = _embedded_ipv4(ip)
        if embedded is not None and any(embedded in network for network in METADATA_NETWORKS if network.version == 4):
            raise DestinationRefused(f"{label} reaches a cloud metadata address ({ip}), which is never allowed")
        if any(ip.version == network.version and ip in network for network in UNUSABLE_NETWORKS):
            raise DestinationRefused(f"{label} reaches {kind_of(ip)} address ({ip}), which is never allowed")
        if not named and not policy.allow.covers(ip) and not (policy.allow_public and is_public(ip)):
            where = "is" if destination.ip is not None else f"resolves to {ip},"
            raise DestinationRefused(
                f"{label} host '{destination.host}' {where} {kind_of(ip)} address that is not in the "
                f"operator's {policy.allow_list}"
            )
        if destination.scheme == "http" and ip.is_global:
            raise DestinationRefused(f"{label} must use https to reach a public address ({ip})")
    if destination.scheme == "http" and not policy.allow_http:
        raise DestinationRefused(f"{label} must use https (plain http callbacks are disabled)")


def _embedded_ipv4(ip: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address carried by a 6to4 or NAT64 address (a way around IPv4-only rules)."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return None
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip in ipaddress.IPv6Network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _refuse_metadata_name(destination: Destination, label: str) -> None:
    if destination.ip is None and destination.host in METADATA_NAMES:
        raise DestinationRefused(
            f"{label} host '{destination.host}' is a cloud metadata service, which is never allowed"
        )


def check_url(url: str, settings: CallbackSettings) -> Destination:
    """The callbacks' create-time check (`check_with` under their policy)."""
    return check_with(url, Policy.for_callbacks(settings))


def check_with(url: str, policy: Policy) -> Destination:
    """The create-time check. Resolves the name (blocking, once) only when no allow-listed name covers it
    and an address could pass (an allowed CIDR, or public addresses under the policy)."""
    destination = parse(url, label=policy.label, schemes=policy.schemes)
    _refuse_metadata_name(destination, policy.label)
    if destination.ip is not None:
        addresses = [destination.ip]
    elif destination.host in policy.allow.names:
        # The operator named this host; its addresses are checked (metadata, scheme) at every delivery.
        if destination.scheme == "http" and not policy.allow_http:
            raise DestinationRefused(f"{policy.label} must use https (plain http callbacks are disabled)")
        return destination
    elif not policy.allow.networks and not policy.allow_public:
        raise DestinationRefused(
            f"{policy.label} host '{destination.host}' is not in the operator's {policy.allow_list}"
        )
    else:
        addresses = _resolve_or_refuse(destination.host, policy.label)
    check_addresses(destination, addresses, policy)
    return destination


def _resolve_or_refuse(host: str, label: str) -> list[IPAddress]:
    try:
        return resolve(host)
    except (OSError, UnicodeError, ValueError):
        raise DestinationRefused(f"{label} host '{host}' could not be resolved") from None


async def pin(url: str, settings: CallbackSettings) -> PinnedTarget:
    """The callbacks' delivery-time check (`pin_with` under their policy)."""
    return await pin_with(url, Policy.for_callbacks(settings))


async def pin_with(url: str, policy: Policy) -> PinnedTarget:
    """The connect-time check: resolve now, check every address, and connect to the first one."""
    destination = parse(url, label=policy.label, schemes=policy.schemes)
    _refuse_metadata_name(destination, policy.label)
    if destination.ip is not None:
        addresses = [destination.ip]
    else:
        addresses = await asyncio.to_thread(_resolve_or_refuse, destination.host, policy.label)
    check_addresses(destination, addresses, policy)
    address = addresses[0]
    shown = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    port = "" if destination.default_port else f":{destination.port}"
    return PinnedTarget(
        url=f"{destination.scheme}://{shown}{port}{destination.target}",
        host_header=destination.netloc,
        sni_hostname=destination.host if destination.scheme == "https" and destination.ip is None else None,
        address=str(address),
    )
