"""What the operator CLI says when a command fails: one line on stderr, `error: <what happened>; <what to do>`.

Every command of `video-gateway` runs inside `CliGroup.invoke`, which turns an exception into that line and exit
status 1 (click's own usage errors, exit 2, pass through untouched). `video-gateway --debug …` (or `VG_DEBUG=1`)
lets the exception through instead, with its traceback. The line never carries a secret: it is built from our
own words, the server's short reason and addresses without credentials, and every secret value the settings
(or the environment) hold is masked in it all the same.
"""

from __future__ import annotations

import os
import re
import socket
import ssl
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
import typer
from botocore.exceptions import BotoCoreError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.exceptions import HTTPClientError as BotoHTTPClientError
from pydantic import BaseModel, SecretStr, ValidationError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError
from typer.core import TyperGroup

from app.archive.storage import StorageError
from app.core.config import ENV_PREFIX, FILE_SUFFIX, NESTED_DELIMITER, DatabaseSettings, Settings, get_settings
from app.core.errors import GatewayError, ServiceUnavailable, database_unavailable, log_unexpected

DEBUG_ENV = "VG_DEBUG"
DEBUG_META = "video_gateway.debug"
SETTINGS_HINT = (
    "run `make run` in this checkout first (it writes .devstack/cli.env), or set VG_MODE=dev, "
    "or the production settings (docs/configuration.md)"
)
DEBUG_HINT = "run with --debug for the traceback"
# Long-running commands: an unexpected failure is also logged, with its traceback, to their configured log.
SERVICE_COMMANDS = frozenset({"serve", "worker", "simulator", "dev"})
# SQLSTATEs of a database that is there but not the one we need.
INVALID_CATALOG = "3D000"  # database does not exist
UNDEFINED_TABLE = "42P01"  # relation does not exist: not migrated
AUTHORIZATION_CLASS = "28"  # role does not exist, wrong password, pg_hba refuses
# Environment variables whose values are masked in an error line even when the settings could not be read.
SECRET_NAME = re.compile(r"(KEY|SECRETS?|PASSWORD|TOKEN)$", re.IGNORECASE)
MASK = "***"
SHORTEST_MASKED = 3  # shorter values would mask ordinary words; no real secret is that short
LONGEST_MESSAGE = 500


class CliError(Exception):
    """A failure the command understands: its message is already `<what happened>; <what to do>`."""


def debug_requested(ctx: typer.Context | None = None) -> bool:
    """--debug on the command line (kept in the context's meta by the root callback), or VG_DEBUG=1."""
    if ctx is not None and ctx.meta.get(DEBUG_META):
        return True
    return os.environ.get(DEBUG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


class CliGroup(TyperGroup):
    """The root command group: every failure of a command below it becomes one `error:` line and exit 1."""

    def invoke(self, ctx: Any) -> Any:  # typer's (vendored) click Context
        try:
            return super().invoke(ctx)
        except (typer.TyperException, typer.Exit, typer.Abort):
            raise  # usage errors (exit 2, click's exceptions) and the commands' own exits stay as they are
        except Exception as exc:
            if debug_requested(ctx):
                raise
            settings = _known_settings(ctx, exc)
            if ctx.invoked_subcommand in SERVICE_COMMANDS and explain(exc, settings=settings) is None:
                # A service that crashed keeps its traceback in its own (configured, redacted) log: it may not
                # happen again when run with --debug.
                log_unexpected(exc, what=f"video-gateway {ctx.invoked_subcommand} stopped")
            typer.echo(error_line(exc, settings=settings), err=True)
            raise typer.Exit(1) from None


def _known_settings(ctx: typer.Context, exc: BaseException) -> Settings | None:
    """The settings the command ran with, when they can be had (never when they are what failed)."""
    if isinstance(exc, ValidationError):
        return None
    given = ctx.find_object(Settings)
    if given is not None:
        return given
    try:
        return get_settings()
    except Exception:
        return None


def error_line(exc: BaseException, *, settings: Settings | None = None) -> str:
    """The whole line for `exc`: `error: …`, one line, secrets masked."""
    line = "error: " + _one_line(describe(exc, settings=settings))
    return redact(line, secret_values(settings))


def describe(exc: BaseException, *, settings: Settings | None = None) -> str:
    """What happened and what to do, without the `error: ` prefix."""
    explained = explain(exc, settings=settings)
    if explained is not None:
        return explained
    return f"{type(exc).__name__}: {_message(exc)} ({DEBUG_HINT})"


def explain(exc: BaseException, *, settings: Settings | None = None) -> str | None:
    """What happened and what to do, for a failure we know; None for anything unexpected."""
    if isinstance(exc, CliError):
        return str(exc)
    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return settings_problem(exc)
    s3 = s3_problem(exc, settings)
    if s3 is not None:
        return s3
    database = postgres_problem(exc, database_url(settings))
    if database is not None:
        return database
    secret_file = secret_file_problem(exc)
    if secret_file is not None:
        return secret_file
    if isinstance(exc, httpx.RequestError):
        return http_problem(exc)
    if isinstance(exc, GatewayError):
        return exc.message
    return None


# ----- settings ---------------------------------------------------------------------------------


def env_name(location: tuple[int | str, ...]) -> str:
    """The environment variable of a settings field: ('db', 'url') → VG_DB__URL (list indices dropped)."""
    parts = [str(part).upper() for part in location if isinstance(part, str)]
    return ENV_PREFIX + NESTED_DELIMITER.join(parts)


def settings_problem(exc: ValidationError) -> str:
    """Which settings failed (their VG_… names) and why, then how to get settings that work."""
    problems: list[str] = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        message = str(error.get("msg", "invalid")).removeprefix("Value error, ").removeprefix("Assertion failed, ")
        head = message.split("; ", 1)[0].rstrip(".")
        location = tuple(error.get("loc", ()))
        named = re.findall(rf"\b{ENV_PREFIX}[A-Z0-9_]+", message)
        if location:
            name = env_name(location)
            problems.append(head if name in named else f"{name}: {head}")
        elif named:
            problems.append(head if any(name in head for name in named) else f"{', '.join(named)}: {head}")
        else:
            problems.append(head)
    what = ", ".join(dict.fromkeys(problems)) or "settings are not valid"
    return f"invalid settings: {what}; {SETTINGS_HINT}"


def secret_file_problem(exc: BaseException) -> str | None:
    """A `VG_…_FILE` naming a file that cannot be read (read while the settings are built)."""
    if not isinstance(exc, OSError) or not _raised_in(exc, "app.core.config"):
        return None
    path = exc.filename
    names = [
        name
        for name, value in os.environ.items()
        if name.startswith(ENV_PREFIX) and name.endswith(FILE_SUFFIX) and path is not None and value == str(path)
    ]
    variable = names[0] if names else f"a {ENV_PREFIX}…{FILE_SUFFIX} variable"
    return f"cannot read {path} ({exc.strerror or type(exc).__name__}), named by {variable}; fix the path or unset it"


# ----- Postgres ---------------------------------------------------------------------------------


def database_url(settings: Settings | None) -> str:
    if settings is not None:
        return settings.db.url.get_secret_value()
    return os.environ.get(f"{ENV_PREFIX}DB{NESTED_DELIMITER}URL") or DatabaseSettings().url.get_secret_value()


def postgres_address(url: str) -> str:
    """HOST:PORT/DB of a database URL: never the user's password."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "(an unparseable VG_DB__URL)"
    host = parsed.host or str(parsed.query.get("host") or "localhost")
    return f"{host}:{parsed.port or 5432}/{parsed.database or ''}"


def postgres_problem(exc: BaseException, url: str) -> str | None:
    """Postgres could not be reached or used as configured (VG_DB__URL); None when `exc` is no such failure."""
    address = postgres_address(url)
    sqlstate = _sqlstate(exc)
    if sqlstate == INVALID_CATALOG:
        return (
            f"cannot reach Postgres at {address} ({_server_message(exc)}); create the database "
            f"(`createdb {address.rsplit('/', 1)[-1]}`, then `video-gateway migrate`) or fix VG_DB__URL"
        )
    if sqlstate == UNDEFINED_TABLE:
        return (
            f"the database at {address} has no schema yet ({_server_message(exc)}); run `video-gateway migrate` first"
        )
    if sqlstate is not None and sqlstate.startswith(AUTHORIZATION_CLASS):
        return f"cannot reach Postgres at {address} ({_server_message(exc)}); check the user and password in VG_DB__URL"
    # A lost or refused connection (SQLAlchemy's wrappers, or the socket's own error that asyncpg lets
    # through), never a bad statement: the API's one definition (app/core/errors.py).
    if not (isinstance(exc, ServiceUnavailable) or database_unavailable(exc)):
        return None
    return f"cannot reach Postgres at {address} ({short_reason(exc)}); is it running? (VG_DB__URL)"


def _sqlstate(exc: BaseException) -> str | None:
    for link in _chain(exc):
        for holder in (link, getattr(link, "orig", None)):
            state = getattr(holder, "sqlstate", None) or getattr(holder, "pgcode", None)
            if isinstance(state, str) and len(state) == 5:
                return state
    return None


def _server_message(exc: BaseException) -> str:
    """The server's own words (asyncpg's exception message, e.g. `database "x" does not exist`)."""
    for link in _chain(exc):
        if type(link).__module__.startswith("asyncpg"):
            return _message(link)
    original = getattr(exc, "orig", None)
    return _message(original if original is not None else exc)


# ----- S3 ---------------------------------------------------------------------------------------


def s3_endpoint(settings: Settings | None) -> str:
    endpoint = settings.s3.endpoint_url if settings is not None else os.environ.get("VG_S3__ENDPOINT_URL")
    if not endpoint:
        return "AWS S3" + (f" ({settings.s3.region})" if settings is not None else "")
    parts = urlsplit(endpoint)
    return f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}{parts.path}".rstrip("/")


def s3_unreachable(exc: BaseException) -> bool:
    """S3 never answered (refused, timed out, unknown host), as opposed to answering with an error."""
    return any(isinstance(link, BotoConnectionError | BotoHTTPClientError) for link in _chain(exc))


def s3_unreachable_line(endpoint: str, exc: BaseException) -> str:
    return f"cannot reach S3 at {endpoint} ({short_reason(exc)}); is it running? (VG_S3__ENDPOINT_URL)"


def s3_problem(exc: BaseException, settings: Settings | None) -> str | None:
    if not isinstance(exc, StorageError | BotoCoreError) and not _raised_in(exc, "botocore", "boto3"):
        return None
    endpoint = s3_endpoint(settings)
    if s3_unreachable(exc):
        return s3_unreachable_line(endpoint, exc)
    return f"S3 at {endpoint} failed: {_message(exc)}; check VG_S3__* (bucket {_bucket(settings)}, credentials)"


def _bucket(settings: Settings | None) -> str:
    return settings.s3.bucket if settings is not None else os.environ.get("VG_S3__BUCKET", "video-gateway")


# ----- HTTP -------------------------------------------------------------------------------------


def http_problem(exc: httpx.RequestError, *, hint: str = "is it running, and is that the right address?") -> str:
    try:
        url = exc.request.url
        where = f"{url.scheme}://{url.host}{f':{url.port}' if url.port else ''}"
    except RuntimeError:  # no request attached
        where = "the server"
    return f"cannot reach {where} ({short_reason(exc)}); {hint}"


# ----- helpers ----------------------------------------------------------------------------------


def short_reason(exc: BaseException) -> str:
    """A few words on why a connection failed, from the most telling exception of the chain."""
    for link in _chain(exc):
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
        if isinstance(link, socket.gaierror):
            return "unknown host"
        if isinstance(link, TimeoutError | httpx.TimeoutException):
            return "timed out"
        if isinstance(link, ConnectionResetError | BrokenPipeError | ConnectionAbortedError):
            return "connection lost"
        if isinstance(link, ssl.SSLError):
            return "TLS failed"
    for link in _chain(exc):
        if type(link).__module__.startswith("asyncpg"):
            return _message(link)
        if isinstance(link, BotoConnectionError):
            return "could not connect"
    name = type(exc).__name__
    if "Timeout" in name:
        return "timed out"
    return name


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc`, then what caused it (`raise … from`, raised while handling, a DBAPIError's driver error), once each."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending:
        link = pending.pop(0)
        if id(link) in seen:
            continue
        seen.add(id(link))
        yield link
        original = getattr(link, "orig", None) if isinstance(link, DBAPIError) else None
        pending.extend(
            following for following in (original, link.__cause__ or link.__context__) if following is not None
        )


def _raised_in(exc: BaseException, *packages: str) -> bool:
    """Whether any exception of the chain passed through code of these packages (by module name)."""
    for link in _chain(exc):
        traceback = link.__traceback__
        while traceback is not None:
            module = str(traceback.tb_frame.f_globals.get("__name__", ""))
            if any(module == package or module.startswith(package + ".") for package in packages):
                return True
            traceback = traceback.tb_next
    return False


def _message(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, DBAPIError):
        # "(sqlalchemy.dialects.postgresql.asyncpg.Error) <server message>\n[SQL: …]\n(Background …)"
        text = re.sub(r"^\([\w.]+\)\s*", "", text.split("\n", 1)[0])
    return text or type(exc).__name__


def _one_line(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= LONGEST_MESSAGE else flat[: LONGEST_MESSAGE - 1] + "…"


def secret_values(settings: Settings | None) -> set[str]:
    """Every secret an error line must not show: the settings' SecretStr values (and the DB password), or,
    without settings, the values of secret-looking VG_ variables and the password of VG_DB__URL."""
    values: set[str] = set()
    urls = [os.environ.get(f"{ENV_PREFIX}DB{NESTED_DELIMITER}URL", "")]
    if settings is not None:
        values.update(_secrets_of(settings))
        urls.append(settings.db.url.get_secret_value())
    for name, value in os.environ.items():
        if name.startswith(ENV_PREFIX) and SECRET_NAME.search(name):
            values.add(value)
    for url in urls:
        try:
            password = make_url(url).password if url else None
        except ArgumentError:
            password = None
        if password:
            values.add(str(password))
    return {value for value in values if len(value) >= SHORTEST_MASKED}


def _secrets_of(model: BaseModel) -> Iterator[str]:
    for name in type(model).model_fields:
        yield from _secrets_in(getattr(model, name))


def _secrets_in(value: object) -> Iterator[str]:
    if isinstance(value, SecretStr):
        secret = value.get_secret_value()
        yield secret
        yield from secret.replace(",", " ").split()
    elif isinstance(value, BaseModel):
        yield from _secrets_of(value)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _secrets_in(item)
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _secrets_in(item)


def redact(line: str, secrets: set[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        line = line.replace(secret, MASK)
    return line
