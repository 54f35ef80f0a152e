"""Operator commands: `video-gateway status | replay | reconcile | webhooks list | smoke`, printed as tables.

They talk to Postgres (and, for `reconcile`, to upstream and S3) with the same settings as the service,
so an operator runs them from any API or worker pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import httpx
import typer
from rich.console import Console
from rich.table import Table

from app.archive import queue, reconciler
from app.archive import service as archive_service
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage
from app.core.config import Settings, get_settings
from app.core.db import Database
from app.core.timestamps import short_duration
from app.ops.smoke import smoke
from app.upstream.router import UpstreamRouter
from app.webhooks import service as webhook_service

T = TypeVar("T")


def _console() -> Console:
    # Built per command, so the terminal's width (or COLUMNS) at that moment is used.
    return Console()


webhooks_app = typer.Typer(no_args_is_help=True, help="Inspect webhook deliveries.")


def _with_database(work: Callable[[Database, Settings], Awaitable[T]]) -> T:
    settings = get_settings()

    async def run() -> T:
        database = Database.connect(settings.db)
        try:
            return await work(database, settings)
        finally:
            await database.dispose()

    return asyncio.run(run())


def status(
    within: Annotated[int, typer.Option(help="Minutes: jobs whose window closes sooner are at risk.")] = 10,
) -> None:
    """The queue by state, its oldest waiting job, and downloads at risk of missing their deadline."""
    console = _console()

    async def work(database: Database, _: Settings) -> None:
        async with database.sessionmaker() as session:
            states = await queue.job_states(session)
            oldest = await queue.oldest_queued_seconds(session)
            risky = await queue.at_risk(session, within_seconds=within * 60)
        table = Table(title="Archive queue")
        table.add_column("state")
        table.add_column("jobs", justify="right")
        for state in ("queued", "running", "succeeded", "failed", "expired", "dead"):
            table.add_row(state, str(states.get(state, 0)))
        console.print(table)
        console.print(f"oldest runnable queued job waits for {short_duration(oldest)}")
        if not risky:
            console.print(f"no download closes its window within {within} minutes")
            return
        at_risk = Table(title=f"At risk: window closes within {within} min", style="red")
        for column in ("job", "video", "variant", "state", "attempts", "time left", "last error"):
            at_risk.add_column(column)
        for row in risky:
            at_risk.add_row(
                str(row["id"]),
                row["video_id"],
                str(row["variant"]),
                row["state"],
                f"{row['attempts']}/{row['max_attempts']}",
                short_duration(row["seconds_left"]),
                (row["last_error"] or "")[:60],
            )
        console.print(at_risk)

    _with_database(work)


def replay(video_id: str) -> None:
    """Re-archive one completed video (every variant downloaded again to the same keys)."""
    console = _console()

    async def work(database: Database, settings: Settings) -> int:
        async with database.sessionmaker.begin() as session:
            return await archive_service.replay(session, video_id=video_id, settings=settings)

    queued = _with_database(work)
    if queued == 0:
        console.print(f"nothing queued: {video_id} is unknown, not completed, or already being archived")
        raise typer.Exit(1)
    console.print(f"queued {queued} download(s) for {video_id}; a worker picks them up")


def reconcile(
    since: Annotated[int, typer.Option(help="Hours back: videos created since then are looked at.")] = 6,
) -> None:
    """One reconciler pass now: re-read unfinished videos upstream and queue missing downloads."""
    console = _console()

    async def work(database: Database, settings: Settings) -> reconciler.ReconcileReport:
        upstreams = UpstreamRouter(settings)
        storage = ArchiveStorage(settings.s3)
        try:
            context = JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage)
            return await reconciler.reconcile_once(context, since=datetime.now(UTC) - timedelta(hours=since))
        finally:
            await upstreams.aclose()
            storage.close()

    with console.status("reconciling"):
        report = _with_database(work)
    console.print(f"queued {report.syncs_queued} sync(s) and {report.downloads_queued} download(s)")


@webhooks_app.command("list")
def list_webhooks(
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 20,
    outcome: Annotated[str | None, typer.Option(help="enqueued, orphan, ignored or matched")] = None,
    rejected: Annotated[
        bool, typer.Option("--rejected", help="Rejections by reason, from the API's /metrics (never stored).")
    ] = False,
    api_url: Annotated[
        str, typer.Option(envvar="VG_OPS_API_URL", help="The API to read rejection counters from.")
    ] = "http://127.0.0.1:8000",
) -> None:
    """Recent deliveries as stored, or (--rejected) refused deliveries counted by reason."""
    console = _console()
    if rejected:
        # Refused deliveries are never written to Postgres (anyone can send them); the API counts them.
        text = httpx.get(f"{api_url.rstrip('/')}/metrics", timeout=10).text
        table = Table(title="Rejected webhook deliveries (since the API started)")
        table.add_column("reason")
        table.add_column("count", justify="right")
        for line in text.splitlines():
            if line.startswith("vg_webhook_deliveries_total") and 'outcome="rejected"' in line:
                labels, _, value = line.rpartition(" ")
                reason = labels.partition('reason="')[2].partition('"')[0] or "-"
                table.add_row(reason, str(int(float(value))))
        console.print(table)
        return

    async def work(database: Database, _: Settings) -> list[tuple[str, ...]]:
        async with database.sessionmaker() as session:
            events = await webhook_service.recent_deliveries(session, limit=limit, outcome=outcome)
            return [
                (
                    event.received_at.strftime("%Y-%m-%d %H:%M:%S"),
                    event.webhook_id,
                    event.event_type,
                    event.upstream_profile,
                    event.upstream_video_id or "-",
                    event.video_id or "-",
                    event.outcome,
                )
                for event in events
            ]

    rows = _with_database(work)
    table = Table(title="Webhook deliveries (newest first)")
    for column in ("received", "webhook-id", "type", "profile", "upstream video", "video", "outcome"):
        table.add_column(column)
    for row in rows:
        table.add_row(*row)
    console.print(table)


def register(cli: typer.Typer) -> None:
    cli.command()(status)
    cli.command()(replay)
    cli.command()(reconcile)
    cli.command()(smoke)
    cli.add_typer(webhooks_app, name="webhooks")
