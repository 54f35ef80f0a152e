"""`video-gateway keys limits`: show or set a caller's limits from a shell.

The command belongs to the `keys` group (app/auth/cli.py: create, list, revoke), which app/cli.py composes
with `register`; it opens the database and runs in one transaction with that group's runner.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Literal

import typer
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import service as auth_service
from app.auth.cli import LIST_CALLERS, run_in_transaction, settings_of
from app.limits import service as limits_service

CLEARABLE = ("rpm", "concurrency", "budget", "period")
FIELD_OF = {
    "rpm": "requests_per_minute",
    "concurrency": "max_concurrent_renders",
    "budget": "budget_usd_per_period",
    "period": "budget_period",
}


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
    """Show CALLER's limits; with options, set (or --clear) its overrides first. Renders
    use them at once; the request rate applies within a second."""
    settings = settings_of(ctx)
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

    view = run_in_transaction(settings, work, if_not_found=LIST_CALLERS)
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


def register(keys_app: typer.Typer) -> None:
    """Add `limits` to the `keys` group, after auth's commands (the order `keys --help` lists them in)."""
    keys_app.command("limits")(limits)
