"""`video-gateway keys create|list|revoke|limits`: key and limit administration from a shell.

Each command opens the database, does one thing in one transaction and prints the result. A new key is
printed alone on stdout (everything else goes to stderr), so `KEY=$(video-gateway keys create svc)` works.
"""

from __future__ import annotations

import asyncio
import shlex
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal, TypeVar

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.core.config import Settings, get_settings
from app.core.db import Database
from app.core.errors import GatewayError, ResourceNotFound
from app.limits import service as limits_service

T = TypeVar("T")
LIST_CALLERS = "`video-gateway keys list` shows every caller that has a key"

keys_app = typer.Typer(no_args_is_help=True, add_completion=False, help="Create, list and revoke API keys; set limits.")


def _settings(ctx: typer.Context) -> Settings:
    # Tests pass their settings as the context object; the console script reads the environment.
    return ctx.obj if isinstance(ctx.obj, Settings) else get_settings()


def _run(settings: Settings, work: Callable[[AsyncSession], Awaitable[T]], *, if_not_found: str | None = None) -> T:
    """`work` in one transaction; a refusal (unknown caller or key, bad value) is one `error:` line and exit 1,
    followed by `if_not_found` (what to do) when what was named does not exist."""

    async def run() -> T:
        database = Database.connect(settings.db)
        try:
            async with database.sessionmaker.begin() as session:
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
    settings = _settings(ctx)
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
    issued = _run(settings, work, if_not_found=None if create_caller else create_it)
    typer.echo(f"created key {issued.api_key.id} ({issued.api_key.prefix}…) for caller {caller}", err=True)
    typer.echo(issued.key)


@keys_app.command("list")
def list_keys(
    ctx: typer.Context,
    caller: Annotated[str | None, typer.Argument(help="Only this caller's keys")] = None,
) -> None:
    """List keys: id, caller, prefix, label, dates and state. Never the key or its digest."""
    settings = _settings(ctx)

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

    rows = _run(settings, work, if_not_found=LIST_CALLERS)
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
    settings = _settings(ctx)

    async def work(session: AsyncSession) -> str:
        key_id = await auth_service.find_key_id(session, key_or_id=key)
        revoked = await auth_service.revoke_key(session, key_id=key_id)
        return f"revoked key {revoked.id} ({revoked.prefix}…) at {_when(revoked.revoked_at)}"

    typer.echo(_run(settings, work, if_not_found="`video-gateway keys list` shows every key's id"))


CLEARABLE = ("rpm", "concurrency", "budget", "period")
FIELD_OF = {
    "rpm": "requests_per_minute",
    "concurrency": "max_concurrent_renders",
    "budget": "budget_usd_per_period",
    "period": "budget_period",
}


@keys_app.command("limits")
def limits(
    ctx: typer.Context,
    caller: Annotated[str, typer.Argument(help="Caller name")],
    rpm: Annotated[int | None, typer.Option(min=1, help="Requests per minute per key")] = None,
    concurrency: Annotated[int | None, typer.Option(min=0, help="Renders queued or in progress at once")] = None,
    budget: Annotated[str | None, typer.Option(help="Spend budget in USD per period")] = None,
    period: Annotated[str | None, typer.Option(help="Budget period: day or month")] = None,
    clear: Annotated[
        list[str] | None, typer.Option(help=f"Back to the default: one of {', '.join(CLEARABLE)} (repeatable)")
    ] = None,
) -> None:
    """Show CALLER's limits; with options, set (or --clear) its overrides first. Applies at once."""
    settings = _settings(ctx)
    changes: dict[str, object] = {}
    if rpm is not None:
        changes["requests_per_minute"] = rpm
    if concurrency is not None:
        changes["max_concurrent_renders"] = concurrency
    if budget is not None:
        changes["budget_usd_per_period"] = _budget(budget)
    if period is not None:
        changes["budget_period"] = _period(period)
    for name in clear or []:
        if name not in FIELD_OF:
            raise typer.BadParameter(f"--clear takes one of {', '.join(CLEARABLE)}", param_hint="--clear")
        changes[FIELD_OF[name]] = None

    async def work(session: AsyncSession) -> limits_service.LimitsView:
        owner = await auth_service.get_caller_by_name(session, name=caller)
        if changes:
            return await limits_service.update_limits(
                session, caller_id=owner.id, changes=changes, settings=settings.limits
            )
        return await limits_service.get_limits(session, caller_id=owner.id, settings=settings.limits)

    view = _run(settings, work, if_not_found=LIST_CALLERS)
    overrides, effective = view.overrides, view.effective
    for label, name in (
        ("requests per minute", "requests_per_minute"),
        ("concurrent renders", "max_concurrent_renders"),
        ("budget (USD)", "budget_usd_per_period"),
        ("budget period", "budget_period"),
    ):
        source = "caller" if getattr(overrides, name) is not None else "default"
        typer.echo(f"{label:<20} {getattr(effective, name)!s:<12} ({source})")


def _budget(value: str) -> Decimal:
    try:
        amount = Decimal(value)
    except InvalidOperation:
        raise typer.BadParameter("a number of US dollars, e.g. 25 or 12.50", param_hint="--budget") from None
    if not amount.is_finite() or amount < 0 or amount >= Decimal(10) ** 8:
        raise typer.BadParameter("between 0 and 99999999.9999", param_hint="--budget")
    return amount.quantize(Decimal("0.0001"))


def _period(value: str) -> Literal["day", "month"]:
    if value == "day":
        return "day"
    if value == "month":
        return "month"
    raise typer.BadParameter("day or month", param_hint="--period")
