"""`video-gateway`: the console entry point. Each command reads the settings once and passes them down."""

from __future__ import annotations

import asyncio
import sys
from enum import StrEnum
from typing import Annotated

import typer
import uvicorn

from app.core.config import get_settings
from app.core.logging import configure_logging
from app.core.server import uvicorn_options
from app.limits.cli import keys_app
from app.ops import cli as operator_commands

cli = typer.Typer(no_args_is_help=True, add_completion=False, help="Video Gateway")
cli.add_typer(keys_app, name="keys")
operator_commands.register(cli)


@cli.command()
def serve(host: str | None = None, port: int | None = None) -> None:
    """Run the API (the /v1/videos facade)."""
    from app.main import create_app

    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    # Bounded connections, keep-alive and head timeouts, and no trusted forwarded headers: app/core/server.py.
    uvicorn.run(create_app(settings), **uvicorn_options(settings, host=host, port=port))


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
    from app.auth import service as auth_service
    from app.core.db import Database

    settings = get_settings()

    async def run() -> str:
        database = Database.connect(settings.db)
        try:
            async with database.sessionmaker.begin() as session:
                issued = await auth_service.create_caller(session, name=name, label=label)
                return issued.key
        finally:
            await database.dispose()

    typer.echo(asyncio.run(run()))


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
            async with database.sessionmaker.begin() as session:
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


def main() -> None:
    cli()


if __name__ == "__main__":
    main()
