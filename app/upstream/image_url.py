"""Fetching a caller's https `input_reference.image_url`: through the outbound URL guard callbacks use too
(app/core/outbound_urls.py), and in our own words whatever goes wrong.

The gateway fetches the image itself rather than forwarding the link upstream. Only then does one guard
decide where the request goes: a provider that fetched it would resolve the name on its own network (a
self-hosted one sits inside ours) at a time of its choosing, after our check. The bytes are then judged
like an upload (type, size, pixel count) before anything is paid for, and sent upstream as a file part.

The guard is `app.core.outbound_urls` under `image_url_policy`: https only, no credentials, canonical
IPs, public unicast addresses reached, every other kind (loopback, private, link-local, CGNAT, NAT64, ...)
only when the operator lists it (`VG_API__IMAGE_URL_ALLOWED_DESTINATIONS`), cloud metadata never. The name is
resolved once and the checked address is the one connected to (`pin_with`), with the name as Host and TLS
server name; no redirect is followed, no proxy from the environment is used, and the fetch is bounded in
bytes (`max_bytes`) and in time (`image_url_timeout_seconds`, for all of it).

Refusals are 400 `invalid_image_url` with the guard's reason. Download failures are 400
`image_url_unreachable` with one fixed message: a TLS, DNS or connection error's text would make the
gateway a port scanner's oracle. An answer that is not 200 names only its status.
"""

from __future__ import annotations

import asyncio

import httpx

from app.core import outbound_urls
from app.core.config import ApiSettings
from app.core.errors import InvalidRequest, PayloadTooLarge
from app.core.outbound_urls import DestinationRefused, PinnedTarget, Policy

PARAM = "input_reference.image_url"
USER_AGENT = "video-gateway-image-fetch/1.0"
ACCEPT = "image/png, image/jpeg, image/webp"
READ_CHUNK = 64 * 1024
UNREACHABLE = f"Could not download '{PARAM}'"


def image_url_policy(settings: ApiSettings) -> Policy:
    return Policy(
        label=PARAM,
        allow=outbound_urls.AllowList.parse(settings.image_url_allowed_destinations),
        allow_list="image_url allow-list (VG_API__IMAGE_URL_ALLOWED_DESTINATIONS)",
        schemes=("https",),
        allow_http=False,
        allow_public=True,
    )


def _unreachable(why: str | None = None) -> InvalidRequest:
    """Our words only: which of DNS, TCP or TLS failed, and how, is not the caller's to learn."""
    message = f"{UNREACHABLE}: {why}." if why else f"{UNREACHABLE}."
    return InvalidRequest(message, param=PARAM, code="image_url_unreachable")


class ImageFetcher:
    """One per app (the video service's); a client per fetch, so no connection is reused across names."""

    def __init__(self, settings: ApiSettings, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.settings = settings
        self._policy = image_url_policy(settings)
        self._transport = transport  # tests

    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """The body of a 200 answer at most `max_bytes` long, else a `GatewayError` naming `PARAM`."""
        try:
            async with asyncio.timeout(self.settings.image_url_timeout_seconds):
                try:
                    target = await outbound_urls.pin_with(url, self._policy)
                except DestinationRefused as exc:
                    raise InvalidRequest(f"Invalid '{PARAM}': {exc}.", param=PARAM, code="invalid_image_url") from None
                return await self._download(target, max_bytes=max_bytes)
        except TimeoutError:
            raise _unreachable() from None

    async def _download(self, target: PinnedTarget, *, max_bytes: int) -> bytes:
        async with httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # a proxy would resolve the name again, on our behalf
            limits=httpx.Limits(max_keepalive_connections=0),
            timeout=httpx.Timeout(self.settings.image_url_timeout_seconds),
            transport=self._transport,
        ) as client:
            request = client.build_request(
                "GET",
                target.url,
                headers={
                    "host": target.host_header,
                    "accept": ACCEPT,
                    # The body is read raw (`aiter_raw`), so a compressed answer could not be judged.
                    "accept-encoding": "identity",
                    "user-agent": USER_AGENT,
                },
                extensions={"sni_hostname": target.sni_hostname} if target.sni_hostname else None,
            )
            try:
                response = await client.send(request, stream=True)
            except httpx.HTTPError:
                raise _unreachable() from None
            try:
                return await _body_of(response, max_bytes=max_bytes)
            except httpx.HTTPError:
                raise _unreachable() from None
            finally:
                await response.aclose()


async def _body_of(response: httpx.Response, *, max_bytes: int) -> bytes:
    status = response.status_code
    if response.is_redirect:
        raise _unreachable(f"the server answered with a redirect (HTTP {status}), which is not followed")
    if status != 200:
        raise _unreachable(f"the server answered HTTP {status}")
    too_large = PayloadTooLarge(f"The image at '{PARAM}' is larger than {max_bytes} bytes.", param=PARAM)
    declared = response.headers.get("content-length", "")
    # Compared as text first: int() of a 5,000-digit header raises (CPython's digit limit).
    if declared.isascii() and declared.isdigit() and (len(declared) > 18 or int(declared) > max_bytes):
        raise too_large
    body = bytearray()
    # Raw: no Content-Encoding is undone, so no compressed answer can expand past the bound in one chunk.
    async for chunk in response.aiter_raw(READ_CHUNK):
        body += chunk
        if len(body) > max_bytes:
            raise too_large
    return bytes(body)
