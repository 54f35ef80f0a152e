"""`video-gateway keys create|list|revoke`: key administration from a shell, and the commands' shared runner.

Each command opens the database, does one thing in one transaction and prints the result. A new key is
printed alone on stdout (everything else goes to stderr), so `KEY=$(video-gateway keys create svc)` works.
`keys limits` is the limits domain's (app/limits/cli.py), added to this group by app/cli.py with the same
runner (`run_in_transaction`).
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.core.config import Settings, get_settings
from app.core.db import Database
from app.core.errors import GatewayError, ResourceNotFound

T = TypeVar("T")
LIST_CALLERS = "`video-gateway keys list` shows every caller that has a key"

keys_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Create, list and revoke API keys.")


def settings_of(ctx: typer.Context) -> Settings:
    # Tests pass their settings as the context object; the console script reads the environment.
    return ctx.obj if isinstance(ctx.obj, Settings) else get_settings()


def run_in_transaction(
    settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, if_not_found: str | None = None
) -> T:
    """`work` in one transaction; a refusal (unknown caller or key, bad value) is one `error:` line and exit 1,
    followed by `if_not_found` (what to do) when what was named does not exist."""

    async def run() -> T:
        database = Database.connect(settings.db)
        try:
            async with database.transaction() as session:
                return await work(session)
        finally:
            await database.dispose()

    try:
        return asyncio.run(run())
    except GatewayError as exc:
        hint = f"; {if_not_found}" if if_not_found and isinstance(exc, ResourceNotFound) else ""
        typer.echo(f"error: {exc.message.rstrip('.') if hint else exc.message}{hint}", err=True)
        raise typer.Exit(1) from None


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M") if moment else "-"


@keys_app.command("create")
def create(
    ctx: typer.Context,
    caller: Annotated[str, typer.Argument(help="Caller name")],
    label: Annotated[str, typer.Option(help="What the key is for")] = "",
    expires_in_days: Annotated[float | None, typer.Option(min=0.001, help="Expire the key after this long")] = None,
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute for this key")] = None,
    create_caller: Annotated[bool, typer.Option("--create-caller", help="Create the caller if missing")] = False,
) -> None:
    """Create a key for CALLER; the key is printed once (stdout) and stored only as a digest."""
    settings = settings_of(ctx)
    expires_at = datetime.now(UTC) + timedelta(days=expires_in_days) if expires_in_days else None

    async def work(session: AsyncSession) -> auth_service.IssuedKey:
        try:
            owner = await auth_service.get_caller_by_name(session, name=caller)
        except ResourceNotFound:
            if not create_caller:
                raise
            issued = await auth_service.create_caller(session, name=caller, label=label, expires_at=expires_at)
            if rpm is not None:
                await auth_service.set_key_rate(session, key_id=issued.api_key.id, requests_per_minute=rpm)
            return issued
        return await auth_service.add_key(
            session, caller=owner, label=label, expires_at=expires_at, requests_per_minute=rpm
        )

    create_it = f"add --create-caller, or run `video-gateway create-caller {shlex.quote(caller)}`, to create it"
    issued = run_in_transaction(settings, work, if_not_found=None if create_caller else create_it)
    typer.echo(f"created key {issued.api_key.id} ({issued.api_key.prefix}…) for caller {caller}", err=True)
    typer.echo(issued.key)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    caller: Annotated[str | None, typer.Argument(help="Only this caller's keys")] = None,
) -> None:
    """List keys: id, caller, prefix, label, dates and state. Never the key or its digest."""
    settings = settings_of(ctx)

    async def work(session: AsyncSession) -> list[list[str]]:
        caller_id = (await auth_service.get_caller_by_name(session, name=caller)).id if caller else None
        rows = await auth_service.list_keys(session, caller_id=caller_id)
        now = datetime.now(UTC)
        table = []
        for row in rows:
            key = row.key
            state = "revoked" if key.revoked_at else "expired" if key.expires_at and key.expires_at <= now else "active"
            table.append(
                [
                    str(key.id),
                    row.caller_name,
                    key.prefix + "…",
                    key.label or "-",
                    state,
                    _when(key.created_at),
                    _when(key.expires_at),
                    _when(row.last_used_at),
                    str(key.requests_per_minute or "-"),
                ]
            )
        return table

    rows = run_in_transaction(settings, work, if_not_found=LIST_CALLERS)
    header = ["ID", "CALLER", "PREFIX", "LABEL", "STATE", "CREATED", "EXPIRES", "LAST USED", "RPM"]
    widths = [max(len(cell) for cell in column) for column in zip(header, *rows, strict=False)]
    for line in [header, *rows]:
        typer.echo("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)).rstrip())


@keys_app.command("revoke")
def revoke(
    ctx: typer.Context,
    key: Annotated[str, typer.Argument(help="The key's id, or the key itself")],
) -> None:
    """Revoke a key; requests with it get 401 from the next one on (no restart needed)."""
    settings = settings_of(ctx)

    async def work(session: AsyncSession) -> str:
        key_id = await auth_service.find_key_id(session, key_or_id=key)
        revoked = await auth_service.revoke_key(session, key_id=key_id)
        return f"revoked key {revoked.id} ({revoked.prefix}…) at {_when(revoked.revoked_at)}"

    typer.echo(run_in_transaction(settings, work, if_not_found="`video-gateway keys list` shows every key's id"))
