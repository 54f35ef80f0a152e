"""`video-gateway`: the console entry point. Each command reads the settings once and passes them down."""

from __future__ import annotations

import asyncio
import shlex
import sys
from enum import StrEnum
from typing import Annotated

import typer

from app.auth.cli import keys_app
from app.core.config import get_settings
from app.core.heap import settle_heap
from app.core.local_env import load_checkout_env
from app.core.logging import configure_logging
from app.limits import cli as limit_commands
from app.ops import cli as operator_commands
from app.ops.cli_errors import DEBUG_ENV, DEBUG_META, CliError, CliGroup, debug_requested, error_line

# CliGroup: a failing command prints one `error: …; …` line and exits 1 (app/ops/cli_errors.py). Its traceback,
# with --debug, shows no local variables: they hold the settings' secrets.
cli = typer.Typer(
    cls=CliGroup,
    no_args_is_help=True,
    add_completion=False,
    help="Video Gateway",
    pretty_exceptions_show_locals=False,
)
# `keys`: auth's create, list and revoke, and the limits domain's `limits` (limits depends on auth, not back).
limit_commands.register(keys_app)
cli.add_typer(keys_app, name="keys", help="Create, list and revoke API keys; set limits.")
operator_commands.register(cli)


@cli.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool,
        typer.Option(
            "--debug",
            envvar=DEBUG_ENV,
            help="On failure show the full traceback instead of the one-line error (also VG_DEBUG=1).",
        ),
    ] = False,
) -> None:
    ctx.meta[DEBUG_META] = debug


@cli.command()
def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the API (the /v1/videos facade)."""
    # The commands import what only they use (uvicorn, the app), so the worker's process does not hold it.
    import uvicorn

    from app.core.server import uvicorn_options
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    app = create_app(settings)
    settle_heap()  # the start-up heap out of the collector's way (app/core/heap.py)
    # Bounded connections, keep-alive and head timeouts, and no trusted forwarded headers: app/core/server.py.
    uvicorn.run(app, **uvicorn_options(settings, host=host, port=port))


class SimulatorKind(StrEnum):
    openai = "openai"
    gemini = "gemini"
    seedance = "seedance"
    fal = "fal"
    replicate = "replicate"


@cli.command()
def simulator(
    host: str | None = None,
    port: int | None = None,
    kind: Annotated[
        SimulatorKind,
        typer.Option(
            help="openai: the /v1/videos contract; gemini: Veo on the Gemini API (/v1beta); seedance: BytePlus "
            "ModelArk tasks; fal: fal's queue API; replicate: Replicate predictions."
        ),
    ] = SimulatorKind.openai,
) -> None:
    """Run an upstream simulator with real files and webhooks: /v1/videos or one live provider's API."""
    import uvicorn

    from app.simulator import simulator_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    uvicorn.run(
        simulator_app(kind.value, settings.simulator),
        host=host or settings.simulator.host,
        port=port or settings.simulator.port,
        log_level=settings.log_level.lower(),
    )


@cli.command()
def worker() -> None:
    """Run an archive worker (any number, on any number of hosts)."""
    from app.archive.process import run_worker

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    settle_heap()
    asyncio.run(run_worker(settings))


@cli.command()
def migrate(revision: str = "head") -> None:
    """Upgrade the database schema (default: to the newest revision)."""
    from app import migrate as migrations

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    migrations.upgrade(settings.db.url.get_secret_value(), revision)


@cli.command("create-caller")
def create_caller(name: str, label: str = "") -> None:
    """Create a caller with a new API key; the key is printed once and stored only hashed."""
    from sqlalchemy.exc import IntegrityError

    from app.auth import service as auth_service
    from app.auth.errors import Conflict
    from app.core.db import Database

    settings = get_settings()

    async def run() -> str:
        database = Database.connect(settings.db)
        try:
            async with database.transaction() as session:
                issued = await auth_service.create_caller(session, name=name, label=label)
                return issued.key
        finally:
            await database.dispose()

    try:
        key = asyncio.run(run())
    except (Conflict, IntegrityError) as exc:
        # Conflict: the name was looked up and found; IntegrityError: another create won the race (the unique
        # constraint on callers.name).
        if isinstance(exc, IntegrityError) and "uq_callers_name" not in str(exc.orig):
            raise
        raise CliError(
            f"a caller named '{name}' already exists; "
            f"`video-gateway keys create {shlex.quote(name)}` issues it another key"
        ) from exc
    typer.echo(key)


@cli.command("dev-caller")
def dev_caller() -> None:
    """Ensure the `dev` caller with VG_DEV_API_KEY exists (dev mode only)."""
    from app.auth import service as auth_service
    from app.core.db import Database

    settings = get_settings()
    if not settings.is_dev:
        typer.echo("dev-caller needs VG_MODE=dev", err=True)
        raise typer.Exit(2)

    async def run() -> None:
        database = Database.connect(settings.db)
        try:
            async with database.transaction() as session:
                await auth_service.ensure_dev_caller(session, key=settings.dev_api_key.get_secret_value())
        finally:
            await database.dispose()

    asyncio.run(run())


@cli.command()
def dev() -> None:
    """Run the whole stack locally with the simulator as upstream and render one demo video (`make run`)."""
    from app.core.config import Mode, load_settings
    from app.dev.stack import run_dev_stack

    settings = load_settings(mode=Mode.DEV)
    configure_logging(settings.log_level, settings.log_format)
    run_dev_stack(settings)


@cli.command()
def openapi() -> None:
    """Print the API's OpenAPI document as YAML (the source of the committed openapi.yaml)."""
    from app.openapi import openapi_yaml

    sys.stdout.write(openapi_yaml())


@cli.command("config-reference")
def config_reference() -> None:
    """Print the configuration reference (the source of docs/configuration.md)."""
    from app.ops.config_reference import config_reference as render

    sys.stdout.write(render())


# The service's own processes: `make run`, the e2e stacks and the benchmarks start them with a complete
# environment, and `dev` decides its own settings (it writes .devstack/cli.env, never reads it).
SERVICE_COMMANDS = frozenset({"serve", "worker", "simulator", "dev"})


def reads_checkout_env(arguments: list[str]) -> bool:
    """Whether this invocation is an operator command, which fills its environment from .devstack/cli.env."""
    command = next((word for word in arguments if not word.startswith("-")), None)
    return command not in SERVICE_COMMANDS


def main() -> None:
    # After `make run`, this checkout's .devstack/cli.env supplies what the environment does not set.
    try:
        if reads_checkout_env(sys.argv[1:]):
            load_checkout_env()
    except (OSError, UnicodeDecodeError) as exc:
        if "--debug" in sys.argv[1:] or debug_requested():
            raise
        typer.echo(
            error_line(CliError(f"cannot read .devstack/cli.env ({exc}); run `make run` again, or delete it")),
            err=True,
        )
        raise SystemExit(1) from None
    cli()


if __name__ == "__main__":
    main()
