"""Process logging: structured lines (JSON, or console in dev), request ids, and redaction of secrets.

Every record goes through structlog's `ProcessorFormatter`, so the code's plain stdlib calls
(`logger.info("archived %s", video_id)`) come out as one JSON object per line with `timestamp`, `level`,
`logger`, `event` (the formatted message) and whatever is bound in the context: `request_id` (set by
`app.core.access_log` for a request, and by the worker for a job that a request started), `job_id`...

Secrets are `SecretStr` and never logged on purpose; the redaction processor is the second line of defence:
it masks values under sensitive keys (authorization, api_key, secret, signature, token, password,
X-Amz-Signature...) and such parameters inside URLs, bearer tokens and `whsec_` secrets in any string.
These are the gateway's one set of redaction rules: the console's webhook tap (app/console/tap.py) hides
request headers by the same `sensitive_key` and `redact_text`.

A request id travels to the worker through Postgres: `stamp_transaction` puts it in a transaction-local
setting (`vg.request_id`) that the `request_id` columns of `webhook_events` and `archive_jobs` take as their
default, so a webhook's sync job, and the downloads that job queues, remember the request that caused them.
"""

from __future__ import annotations

import logging
import re
import sys
import uuid
from collections.abc import Mapping
from typing import Any, Final

import structlog
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession
from structlog.typing import EventDict, Processor, WrappedLogger

# These log request URLs (query strings included) and, at DEBUG, botocore logs SigV4 signatures, which
# for a presigned URL are the credential itself: they stay at WARNING whatever our own level is.
LEAKY_LOGGERS = ("httpx", "httpcore", "botocore", "boto3", "s3transfer", "urllib3")

REQUEST_ID_HEADER: Final = "x-request-id"
# An incoming id is kept only if it is short and made of safe characters (it is logged and stored).
_REQUEST_ID: Final = re.compile(r"[A-Za-z0-9._:-]{1,64}")
# The transaction-local Postgres setting read by the `request_id` columns' default (see migration 0008).
REQUEST_ID_SETTING: Final = "vg.request_id"

REDACTED: Final = "[REDACTED]"
# A key holding any of these (case-insensitive, `-` read as `_`) has its value masked, whatever it is.
SENSITIVE_KEY_PARTS: Final = (
    "authorization",
    "api_key",
    "apikey",
    "secret",
    "signature",
    "token",
    "password",
    "credential",
    "cookie",
)
# Query parameters that carry credentials (presigned S3 URLs, keys put in a URL by mistake).
_URL_PARAM: Final = re.compile(
    r"(?P<name>[?&;](?:x-amz-signature|x-amz-credential|x-amz-security-token|signature|sig|token|access_token"
    r"|api_key|apikey|api-key|key|secret|password)=)[^&\s\"'#<>]*",
    re.IGNORECASE,
)
_URL_USERINFO: Final = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.-]*://)[^/@\s:]*:[^/@\s]*@", re.IGNORECASE)
_BEARER: Final = re.compile(r"(?P<scheme>\bBearer\s+)[A-Za-z0-9._~+/=-]+", re.IGNORECASE)
_WEBHOOK_SECRET: Final = re.compile(r"\bwhsec_[A-Za-z0-9+/=]+")


def quiet_leaky_loggers() -> None:
    for name in LEAKY_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


# ----- request ids --------------------------------------------------------------------------------


def accept_request_id(incoming: str | None) -> str:
    """The caller's `X-Request-ID` when it is short and safe, else a new one."""
    if incoming is not None and _REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


def current_request_id() -> str | None:
    value = structlog.contextvars.get_contextvars().get("request_id")
    return value if isinstance(value, str) else None


async def stamp_transaction(session: AsyncSession) -> None:
    """Rows this transaction inserts into `webhook_events` / `archive_jobs` get the current request id.

    `set_config(..., true)` lasts until the transaction ends, so a pooled connection carries nothing over.
    Does nothing (no round trip) when no request id is bound.
    """
    request_id = current_request_id()
    if request_id is not None:
        await session.execute(
            text("SELECT set_config(:name, :value, true)"), {"name": REQUEST_ID_SETTING, "value": request_id}
        )


# ----- redaction ----------------------------------------------------------------------------------


def sensitive_key(key: object) -> bool:
    """Whether a value stored under `key` (a log field, a mapping's key, a header's name) is masked whole."""
    if not isinstance(key, str):
        return False
    normalized = key.lower().replace("-", "_")
    return any(part in normalized for part in SENSITIVE_KEY_PARTS)


def redact_text(value: str) -> str:
    """Credentials inside free text: URL parameters, URL user:password, bearer tokens, `whsec_` secrets."""
    if not any(mark in value for mark in ("=", "@", "earer", "whsec_")):
        return value  # the common case: nothing that could match, no regex run
    value = _URL_PARAM.sub(rf"\g<name>{REDACTED}", value)
    value = _URL_USERINFO.sub(rf"\g<scheme>{REDACTED}@", value)
    value = _BEARER.sub(rf"\g<scheme>{REDACTED}", value)
    return _WEBHOOK_SECRET.sub(f"whsec_{REDACTED}", value)


def _redact(value: Any, depth: int = 0) -> Any:
    if depth > 6:
        return value
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, Mapping):
        return {key: REDACTED if sensitive_key(key) else _redact(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_redact(item, depth + 1) for item in value)
    return value


# C0 controls (newline, carriage return, escape, NUL...), DEL, C1 controls and the Unicode line and paragraph
# separators: what can end a line or drive a terminal. The console format writes values as they are.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
# Tracebacks are many lines by nature; only their newlines are kept.
_CONTROL_BUT_NEWLINE: Final = re.compile(r"[\x00-\x09\x0b-\x1f\x7f-\x9f\u2028\u2029]")
_ESCAPES: Final = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
MULTILINE_KEYS: Final = frozenset({"exception", "stack"})


def _escape(match: re.Match[str]) -> str:
    char = match.group()
    return _ESCAPES.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100 else f"\\u{ord(char):04x}")


def escape_control_characters(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor for the console format: control characters in string values become visible escapes.

    A request path is percent-decoded before it is logged, so `%0A`, `%1B` and `%00` in a URL would otherwise
    write a forged log line, a terminal escape sequence or a NUL. JSON lines need none of this (the encoder
    escapes them). Non-string values are rendered with `repr`, which escapes already.
    """
    for key, value in list(event_dict.items()):
        if isinstance(value, str) and not key.startswith("_"):
            pattern = _CONTROL_BUT_NEWLINE if key in MULTILINE_KEYS else _CONTROL
            event_dict[key] = pattern.sub(_escape, value)
    return event_dict


def drop_color_message(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Uvicorn attaches an ANSI-coloured copy of its message to its records; the line needs it once."""
    event_dict.pop("color_message", None)
    return event_dict


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: mask sensitive keys (at any depth) and credentials inside string values."""
    for key, value in list(event_dict.items()):
        if key.startswith("_"):
            continue  # `_record`, `_from_structlog`: the formatter's own, never rendered
        event_dict[key] = REDACTED if sensitive_key(key) and value is not None else _redact(value)
    return event_dict


# ----- configuration ------------------------------------------------------------------------------


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.ExtraAdder(),
        drop_color_message,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def build_formatter(log_format: str = "json") -> structlog.stdlib.ProcessorFormatter:
    """The formatter of every handler: structlog's chain over stdlib records (used by tests too)."""
    renderers: list[Processor]
    if log_format == "console":
        renderers = [
            # Last before rendering: nothing after it can add a raw control character.
            escape_control_characters,
            structlog.dev.ConsoleRenderer(
                colors=sys.stderr.isatty(), exception_formatter=structlog.dev.plain_traceback
            ),
        ]
    else:
        renderers = [structlog.processors.JSONRenderer(default=str)]
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            # Tracebacks become text before redaction, so a secret in an exception message is masked too.
            structlog.processors.format_exc_info,
            redact_secrets,
            *renderers,
        ],
    )


def configure_logging(level: str, log_format: str | None = "json") -> None:
    """Route stdlib logging and structlog through one handler on stderr, in `log_format` (json|console)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(build_formatter(log_format or "json"))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level.upper())
    # Uvicorn's loggers carry their own handlers; let their records reach ours instead.
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True
    structlog.configure(
        processors=[*_shared_processors(), structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    quiet_leaky_loggers()
