"""The OpenAI-contract adapter (`kind: openai`), and the HTTP layer every adapter sends through.

`UpstreamClient` is both: its `send` / `stream` carry the retry, throttle, circuit-breaker and redirect
rules below for any provider (an adapter passes its own auth headers and error-envelope parser), and its
`create_video` ... `stream_content` speak OpenAI's `/v1/videos` contract to a proxy or compatible provider.

Retry policy, by what a failure proves:
- nothing reached upstream (connection refused, connect timeout, pool timeout) or upstream said 429:
  safe to retry any call, a create included, since nothing was created;
- the request was sent and then the answer was lost (read timeout, dropped connection) or was a 5xx:
  reads are retried; a create or remix is NOT (a second render would be paid for) and is reported as
  `UpstreamTimeout` / `UpstreamError` with `x-should-retry: false`, so the stock SDK does not retry either.
Upstream 4xx answers are passed to the caller in OpenAI's error shape, with upstream's message.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from enum import Enum
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpx

from app.core import metrics, retry
from app.core.config import DEFAULT_PROFILE, UpstreamSettings
from app.core.errors import (
    GatewayError,
    RateLimited,
    ResourceNotFound,
    UpstreamError,
    UpstreamTimeout,
    UpstreamUnavailable,
)
from app.upstream.capabilities import SERVED_VARIANTS, ModelCapabilities, check_create, check_remix
from app.upstream.schemas import (
    CharacterCommand,
    CreateVideoCommand,
    EditCommand,
    ExtendCommand,
    SourceVideo,
    UpstreamCharacter,
    UpstreamVideo,
)

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 3
# The longest an upstream 429 may pause our calls to it.
MAX_THROTTLE_SECONDS = 60.0
NO_RETRY_HEADERS = {"x-should-retry": "false"}
# The codes of the errors a paused profile answers with at once (`UpstreamClient.unavailable`).
THROTTLED = "upstream_rate_limited"
CIRCUIT_OPEN = "upstream_circuit_open"
# How far back `recent_videos` pages: at most 20 pages of 100 renders.
RECENT_PAGES = 20
RECENT_PAGE_SIZE = 100

# OpenAI's contract: what every `kind: openai` model is checked against before the call.
OPENAI_CAPABILITIES = ModelCapabilities(
    provider="OpenAI's /v1/videos contract",
    seconds=("4", "8", "12"),
    sizes=("720x1280", "1280x720", "1024x1792", "1792x1024"),
    edit=True,
    # The contract's description of an extension's `seconds` (its SDK type lists only 4, 8 and 12).
    extend_seconds=("4", "8", "12", "16", "20"),
    derive_from_upload=True,
    characters=True,
)

# (message, param, code) from an error answer's body.
ErrorFields = Callable[[httpx.Response], tuple[str, str | None, str | None]]


class CallKind(Enum):
    """Whether repeating the call could start a second paid render."""

    READ = "read"
    PAID = "paid"


class UpstreamRejected(GatewayError):
    """Upstream refused the request with a 4xx; its status and message are passed on."""

    type = "invalid_request_error"

    def __init__(self, status_code: int, message: str, *, param: str | None, code: str | None) -> None:
        super().__init__(message, param=param, code=code)
        self.status_code = status_code


def retry_after_seconds(headers: Mapping[str, str], *, default: float, cap: float) -> float:
    """Seconds to wait from `retry-after-ms` / `retry-after` (seconds or HTTP date), capped."""
    if value := headers.get("retry-after-ms"):
        try:
            return min(max(float(value) / 1000, 0.0), cap)
        except ValueError:
            pass
    if value := headers.get("retry-after"):
        try:
            return min(max(float(value), 0.0), cap)
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value else None
            if parsed is not None:
                return min(max(parsed.timestamp() - time.time(), 0.0), cap)
    return min(default, cap)


def openai_error_fields(response: httpx.Response) -> tuple[str, str | None, str | None]:
    """OpenAI's envelope: `{"error": {"message", "type", "param", "code"}}`."""
    try:
        payload = response.json()
        error = payload.get("error") if isinstance(payload, dict) else None
    except ValueError:
        error = None
    if isinstance(error, dict):
        message = str(error.get("message") or f"Upstream answered {response.status_code}")
        param = error.get("param")
        code = error.get("code")
        return message, str(param) if param else None, str(code) if code else None
    return f"Upstream answered {response.status_code}", None, None


def map_error_response(
    response: httpx.Response, *, kind: CallKind, error_fields: ErrorFields = openai_error_fields
) -> GatewayError:
    """A gateway error for an upstream answer that is not a success."""
    status = response.status_code
    message, param, code = error_fields(response)
    if status == 404:
        return ResourceNotFound(message, param=param, code=code or "not_found")
    if status == 429:
        return RateLimited(message, code=code or "rate_limit_exceeded")
    if status in (401, 403):
        # The caller's key was fine; ours was not. Say so without echoing anything of the key.
        logger.error("upstream rejected the gateway's credentials (HTTP %s)", status)
        return UpstreamError("The gateway's upstream credentials were rejected.", code="upstream_auth_failed")
    if 400 <= status < 500:
        return UpstreamRejected(status, message, param=param, code=code)
    headers = NO_RETRY_HEADERS if kind is CallKind.PAID else {}
    # A provider's server error text can carry its internals: log it, answer with our own words.
    logger.warning("upstream answered HTTP %s: %s", status, message[:500])
    return UpstreamError(
        f"Upstream failed with HTTP {status}. "
        + ("The render may or may not have started; it was not retried." if kind is CallKind.PAID else ""),
        code="upstream_error",
        headers=headers,
    )


class CircuitBreaker:
    """Fail fast while a provider is down: open after `threshold` consecutive failures, for `cooldown` s.

    After the cool-down, calls go through again (half-open); the first failure re-opens it at once, the
    first success closes it. Per upstream profile, per process: each process learns on its own.
    """

    def __init__(self, *, threshold: int, cooldown: float) -> None:
        self._threshold = threshold
        self._cooldown = cooldown
        self._failures = 0
        self._open_until = 0.0

    def seconds_open(self) -> float:
        """Seconds until calls may go through again (0 when closed or half-open)."""
        return max(0.0, self._open_until - time.monotonic())

    def record_success(self) -> None:
        self._failures = 0
        self._open_until = 0.0

    def record_failure(self) -> None:
        self._failures += 1
        if self._failures >= self._threshold:
            self._open_until = time.monotonic() + self._cooldown


def render_may_have_started(error: GatewayError) -> bool:
    """Whether a failed create or remix may still have started a render upstream (an ambiguous failure)."""
    return isinstance(error, UpstreamError) and error.headers.get("x-should-retry") == "false"


class UpstreamClient:
    """One shared client per profile and process; every call has an explicit timeout."""

    kind = "openai"
    # OpenAI's contract serves all three variants; adapters of live providers serve fewer (the rest are derived).
    served_variants = SERVED_VARIANTS["openai"]

    def __init__(
        self,
        settings: UpstreamSettings,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        allow_http_redirects: bool = False,
        profile: str = DEFAULT_PROFILE,
        auth_headers: Mapping[str, str] | None = None,
        error_fields: ErrorFields = openai_error_fields,
    ) -> None:
        self._settings = settings
        self.profile = profile  # the metrics' label
        if auth_headers is None:
            auth_headers = {"authorization": f"Bearer {settings.api_key.get_secret_value()}"}
        # Never sent on a redirect to another host.
        self._auth_header_names = tuple(name.lower() for name in auth_headers)
        self._error_fields = error_fields
        self._base_url = settings.base_url.rstrip("/") + "/"
        self._redirect_hosts = {urlsplit(self._base_url).hostname or "", *settings.content_redirect_hosts}
        self._allow_http_redirects = allow_http_redirects
        self._breaker = CircuitBreaker(threshold=settings.breaker_failures, cooldown=settings.breaker_cooldown_seconds)
        # Set from an upstream 429's Retry-After once our own retries are spent: until then, every call
        # answers 429 at once instead of adding to the load that caused it.
        self._throttled_until = 0.0
        self._http = httpx.AsyncClient(
            base_url=self._base_url,
            headers=dict(auth_headers),
            timeout=httpx.Timeout(settings.timeout_seconds, connect=settings.connect_timeout_seconds),
            limits=httpx.Limits(keepalive_expiry=settings.keepalive_expiry_seconds),
            follow_redirects=False,
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    # ----- what the contract's models take ------------------------------------------------------

    def capabilities(self, model: str) -> ModelCapabilities:
        return OPENAI_CAPABILITIES

    def check_create(self, command: CreateVideoCommand) -> None:
        check_create(command, self.capabilities(command.model))

    def check_remix(self, model: str) -> None:
        check_remix(model, self.capabilities(model))

    # ----- the contract -------------------------------------------------------------------------

    async def create_video(self, command: CreateVideoCommand) -> UpstreamVideo:
        fields = {
            "prompt": command.prompt,
            "model": command.model,
            "seconds": command.seconds,
            "size": command.size,
        }
        if command.image_url is not None:
            body: dict[str, Any] = {"json": {**fields, "input_reference": {"image_url": command.image_url}}}
        else:
            # Multipart even without a file, as the stock SDK sends it: `(None, value)` is a plain field.
            parts: list[tuple[str, tuple[str | None, str | bytes, str | None]]] = [
                (name, (None, value, None)) for name, value in fields.items()
            ]
            if command.image is not None:
                image = command.image
                parts.append(("input_reference", (image.filename, image.data, image.content_type)))
            body = {"files": parts}
        response = await self.send("POST", "videos", kind=CallKind.PAID, **body)
        return UpstreamVideo.model_validate(response.json())

    async def remix_video(self, upstream_id: str, *, prompt: str) -> UpstreamVideo:
        response = await self.send("POST", f"videos/{upstream_id}/remix", kind=CallKind.PAID, json={"prompt": prompt})
        return UpstreamVideo.model_validate(response.json())

    async def edit_video(self, command: EditCommand) -> UpstreamVideo:
        return await self._derive("videos/edits", command.source, prompt=command.prompt, model=command.model)

    async def extend_video(self, command: ExtendCommand) -> UpstreamVideo:
        return await self._derive(
            "videos/extensions",
            command.source,
            prompt=command.prompt,
            model=command.model,
            seconds=command.seconds,
        )

    async def _derive(self, path: str, source: SourceVideo, *, prompt: str, model: str, **fields: str) -> UpstreamVideo:
        """An edit or extension: JSON naming upstream's own render, or multipart carrying the uploaded MP4."""
        if source.upstream_id is not None:
            body: dict[str, Any] = {"json": {"prompt": prompt, **fields, "video": {"id": source.upstream_id}}}
        else:
            assert source.upload is not None, "a source is a render or an upload"
            upload = source.upload
            # `model` only with an upload (the guide's form; a render's own model is upstream's to know).
            parts: list[tuple[str, tuple[str | None, str | bytes, str | None]]] = [
                (name, (None, value, None)) for name, value in {"prompt": prompt, "model": model, **fields}.items()
            ]
            parts.append(("video", (upload.filename, upload.data, upload.content_type)))
            body = {"files": parts}
        response = await self.send("POST", path, kind=CallKind.PAID, **body)
        return UpstreamVideo.model_validate(response.json())

    async def create_character(self, command: CharacterCommand) -> UpstreamCharacter:
        video = command.video
        parts: list[tuple[str, tuple[str | None, str | bytes, str | None]]] = [
            ("name", (None, command.name, None)),
            ("video", (video.filename, video.data, video.content_type)),
        ]
        response = await self.send("POST", "videos/characters", kind=CallKind.PAID, files=parts)
        payload = response.json()
        if not isinstance(payload, dict) or not isinstance(payload.get("id"), str) or not payload["id"]:
            # Made, perhaps, but not usable without its id: nothing to hand the caller.
            raise UpstreamError(
                "Upstream answered the character without an id.",
                code="upstream_bad_response",
                headers={"x-should-retry": "false"},
            )
        name = payload.get("name")
        created_at = payload.get("created_at")
        return UpstreamCharacter(
            id=payload["id"],
            name=name if isinstance(name, str) else None,
            created_at=created_at if isinstance(created_at, int) else int(time.time()),
        )

    async def retrieve_video(self, upstream_id: str) -> UpstreamVideo:
        response = await self.send("GET", f"videos/{upstream_id}", kind=CallKind.READ)
        return UpstreamVideo.model_validate(response.json())

    async def delete_video(self, upstream_id: str) -> None:
        await self.send("DELETE", f"videos/{upstream_id}", kind=CallKind.READ)

    def called_back_id(self, delivered_id: str, *, model: str) -> str:
        return delivered_id

    async def recent_videos(self, *, created_since: int) -> list[UpstreamVideo] | None:
        # Newest first, page by page, until a page reaches back past `created_since` (bounded: a cut-off create
        # is looked for minutes after it, not days).
        found: list[UpstreamVideo] = []
        after: str | None = None
        for _ in range(RECENT_PAGES):
            params: dict[str, str | int] = {"order": "desc", "limit": RECENT_PAGE_SIZE}
            if after is not None:
                params["after"] = after
            page = (await self.send("GET", "videos", kind=CallKind.READ, params=params)).json()
            videos = [UpstreamVideo.model_validate(item) for item in page.get("data", [])]
            found.extend(video for video in videos if video.created_at >= created_since)
            if not videos or not page.get("has_more") or videos[-1].created_at < created_since:
                break
            after = videos[-1].id
        return found

    @asynccontextmanager
    async def stream_content(self, upstream_id: str, *, variant: str) -> AsyncIterator[httpx.Response]:
        url = urljoin(self._base_url, f"videos/{upstream_id}/content?variant={variant}")
        async with self.stream(url, headers={"accept": "application/binary"}) as response:
            yield response

    @asynccontextmanager
    async def stream(self, url: str, *, headers: dict[str, str]) -> AsyncIterator[httpx.Response]:
        """The open response of a GET, body not yet read; follows at most 3 redirects itself.

        Redirects are followed by hand: only to the upstream's host or an allow-listed one, over https
        (http too in dev mode), and without our credentials on a hop to another host. Anything else (a
        link-local metadata address, say) is refused before a connection is made.
        """
        origin = urlsplit(url).netloc
        for _hop in range(MAX_REDIRECTS + 1):
            cross_host = urlsplit(url).netloc != origin
            response = await self.send(
                "GET", url, kind=CallKind.READ, stream=True, headers=headers, without_auth=cross_host
            )
            if response.is_redirect and "location" in response.headers:
                await response.aclose()
                url = urljoin(url, response.headers["location"])
                self._check_redirect_target(url)
                continue
            try:
                yield response
            finally:
                await response.aclose()
            return
        raise UpstreamError("Upstream redirected content more than 3 times.", code="too_many_redirects")

    def _check_redirect_target(self, url: str) -> None:
        target = urlsplit(url)
        schemes = {"https", "http"} if self._allow_http_redirects else {"https"}
        if target.scheme not in schemes or (target.hostname or "") not in self._redirect_hosts:
            raise UpstreamError(
                f"Upstream redirected content to a location that is not allowed ({target.scheme}://{target.hostname}).",
                code="redirect_not_allowed",
            )

    # ----- transport and retries ----------------------------------------------------------------

    async def send(
        self,
        method: str,
        url: str,
        *,
        kind: CallKind,
        stream: bool = False,
        without_auth: bool = False,
        **request_args: Any,
    ) -> httpx.Response:
        """One call with the retry policy of `kind`; a non-success answer raises the mapped gateway error."""
        self._refuse_while_paused()
        try:
            response = await self._send_with_retries(
                method, url, kind=kind, stream=stream, without_auth=without_auth, **request_args
            )
        except (UpstreamTimeout, UpstreamUnavailable) as exc:
            self._breaker.record_failure()
            raise exc
        except UpstreamError as exc:
            if exc.code != "upstream_auth_failed":
                self._breaker.record_failure()
            raise
        except RateLimited as exc:
            self._throttled_until = time.monotonic() + float(exc.headers.get("retry-after", "1"))
            raise
        self._breaker.record_success()
        return response

    def unavailable(self) -> GatewayError | None:
        """The error every call fails with now, before anything is sent; None while calls may go through."""
        throttled = self._throttled_until - time.monotonic()
        if throttled > 0:
            return RateLimited(
                "Upstream asked us to slow down; try again shortly.",
                code=THROTTLED,
                headers={"retry-after": str(math.ceil(throttled))},
            )
        if (wait := self._breaker.seconds_open()) > 0:
            return UpstreamUnavailable(
                "Upstream is failing; calls to it are paused for a moment (circuit open).",
                code=CIRCUIT_OPEN,
                headers={"retry-after": str(math.ceil(wait))},
            )
        return None

    def _refuse_while_paused(self) -> None:
        if (error := self.unavailable()) is not None:
            metrics.upstream_error(
                profile=self.profile, status="throttled" if error.code == THROTTLED else "circuit_open"
            )
            raise error

    async def _send_with_retries(
        self,
        method: str,
        url: str,
        *,
        kind: CallKind,
        stream: bool,
        without_auth: bool,
        **request_args: Any,
    ) -> httpx.Response:
        attempts = self._settings.create_attempts if kind is CallKind.PAID else self._settings.read_attempts
        for attempt in range(attempts):
            last = attempt == attempts - 1
            request = self._http.build_request(method, url, **request_args)
            if without_auth:
                for name in self._auth_header_names:
                    request.headers.pop(name, None)
            try:
                response = await self._http.send(request, stream=stream)
            except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
                metrics.upstream_error(profile=self.profile, status="unreachable")
                # Nothing reached upstream: safe to try again whatever the call.
                if last:
                    raise UpstreamUnavailable(f"Upstream is unreachable: {type(exc).__name__}.") from exc
                await self._pause(attempt)
                continue
            except httpx.TimeoutException as exc:
                metrics.upstream_error(profile=self.profile, status="timeout")
                if kind is CallKind.PAID:
                    raise UpstreamTimeout(
                        "Upstream did not answer in time; the render may or may not have started, "
                        "and it was not retried.",
                        headers=NO_RETRY_HEADERS,
                    ) from exc
                if last:
                    raise UpstreamTimeout("Upstream did not answer in time.") from exc
                await self._pause(attempt)
                continue
            except httpx.TransportError as exc:
                metrics.upstream_error(profile=self.profile, status="transport")
                if kind is CallKind.PAID or last:
                    raise UpstreamError(
                        f"The connection to upstream failed: {type(exc).__name__}.",
                        headers=NO_RETRY_HEADERS if kind is CallKind.PAID else {},
                    ) from exc
                await self._pause(attempt)
                continue

            if response.is_success or response.is_redirect:
                return response
            metrics.upstream_error(profile=self.profile, status=str(response.status_code))
            retryable = response.status_code == 429 or (kind is CallKind.READ and response.status_code >= 500)
            if retryable and not last:
                delay = retry_after_seconds(
                    response.headers,
                    default=self._backoff(attempt),
                    cap=self._settings.retry_max_seconds,
                )
                await response.aread()
                await response.aclose()
                await asyncio.sleep(delay)
                continue
            await response.aread()
            await response.aclose()
            error = map_error_response(response, kind=kind, error_fields=self._error_fields)
            if isinstance(error, RateLimited):
                wait = retry_after_seconds(response.headers, default=1.0, cap=MAX_THROTTLE_SECONDS)
                error.headers["retry-after"] = str(max(1, math.ceil(wait)))
            raise error
        raise AssertionError("unreachable: the last attempt returns or raises")

    async def _pause(self, attempt: int) -> None:
        await asyncio.sleep(self._backoff(attempt))

    def _backoff(self, attempt: int) -> float:
        """Before the retry of attempt `attempt` (0-based): exponential with full jitter (app/core/retry.py)."""
        return retry.full_jitter(attempt, base=self._settings.retry_base_seconds, cap=self._settings.retry_max_seconds)
