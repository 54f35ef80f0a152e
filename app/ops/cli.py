"""Operator commands: `video-gateway status | replay | reconcile | audit | webhooks list | smoke`, printed as tables.

They talk to Postgres (and, for `replay`, `reconcile` and `audit`, to upstream and S3) with the same settings
as the service, so an operator runs them from any API or worker pod.
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

from app.archive import audit as archive_audit
from app.archive import queue, reconciler
from app.archive import service as archive_service
from app.archive.audit import Action
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


def _with_context(work: Callable[[JobContext], Awaitable[T]]) -> T:
    """Run `work` with what a worker has: the database, the upstream profiles and S3."""

    async def run(database: Database, settings: Settings) -> T:
        upstreams = UpstreamRouter(settings)
        storage = ArchiveStorage(settings.s3)
        try:
            return await work(JobContext(settings=settings, database=database, upstreams=upstreams, storage=storage))
        finally:
            await upstreams.aclose()
            storage.close()

    return _with_database(run)


def replay(video_id: str) -> None:
    """Re-archive one completed video: download again what upstream still serves, keeping what is archived.

    Upstream is asked first; if it no longer serves the video, nothing changes. An archived variant stays
    archived, and served, until its new copy lands; a re-download that fails leaves it as it was.
    """
    console = _console()

    async def work(context: JobContext) -> archive_service.ReplayOutcome:
        async with context.database.sessionmaker.begin() as session:
            return await archive_service.replay(
                session, video_id=video_id, settings=context.settings, upstreams=context.upstreams
            )

    outcome = _with_context(work)
    kept = f"{outcome.served} archived variant(s) are still served"
    if outcome.result is archive_service.ReplayResult.QUEUED:
        console.print(f"queued {outcome.queued} download(s) for {video_id}; a worker picks them up ({outcome.reason})")
        if outcome.served:
            console.print(f"{kept} until their new copies land")
        return
    if outcome.result is archive_service.ReplayResult.NOT_COMPLETED:
        console.print(f"nothing queued: {video_id} is unknown, deleted or not completed")
    elif outcome.result is archive_service.ReplayResult.IN_FLIGHT:
        console.print(f"nothing queued: every download of {video_id} is already queued or running")
    elif outcome.result is archive_service.ReplayResult.UPSTREAM_GONE:
        console.print(f"upstream no longer has {video_id} ({outcome.reason}); nothing changed: {kept}")
    else:
        console.print(f"could not ask upstream about {video_id} ({outcome.reason}); nothing changed: {kept}")
    raise typer.Exit(1)


def reconcile(
    since: Annotated[int, typer.Option(help="Hours back: videos created since then are looked at.")] = 6,
) -> None:
    """One reconciler pass now: re-read unfinished videos upstream and queue missing downloads."""
    console = _console()

    async def work(context: JobContext) -> reconciler.ReconcileReport:
        return await reconciler.reconcile_once(context, since=datetime.now(UTC) - timedelta(hours=since))

    with console.status("reconciling"):
        report = _with_context(work)
    console.print(f"queued {report.syncs_queued} sync(s) and {report.downloads_queued} download(s)")


def audit(
    sha256: Annotated[
        bool, typer.Option("--sha256", help="Also read every object whole and compare its SHA-256 (reads every byte).")
    ] = False,
    video: Annotated[str | None, typer.Option("--video", help="Only this video's archived objects.")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many objects, least recently checked first.")] = 1000,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Report what would be repaired or marked lost; change nothing.")
    ] = False,
) -> None:
    """Check archived objects in S3 (present, with the recorded size); repair or mark lost what is not.

    A missing or bad object is downloaded again while upstream still serves the video, else marked `lost`.
    Exits 1 when anything was found (or could not be checked), 0 when every object checked is intact.
    """
    console = _console()

    async def work(context: JobContext) -> archive_audit.AuditReport:
        return await archive_audit.audit_once(context, limit=limit, video_id=video, full_hash=sha256, dry_run=dry_run)

    with console.status("auditing"):
        report = _with_context(work)
    how = "HEAD and a full SHA-256 read" if sha256 else "HEAD: presence and size"
    console.print(f"{report.checked} object(s) checked ({how}), {report.intact} intact")
    if report.findings:
        table = Table(title="Findings" + (" (dry run: nothing changed)" if dry_run else ""))
        for column in ("video", "variant", "problem", "action", "detail", "why"):
            table.add_column(column)
        for finding in report.findings:
            table.add_row(
                finding.video_id,
                finding.variant,
                finding.problem.value,
                finding.action.value,
                finding.detail,
                finding.reason,
                style="red" if finding.action in (Action.LOST, Action.WOULD_LOSE) else None,
            )
        console.print(table)
    for video_id, variant, error in report.unreadable:
        console.print(f"could not check {video_id} {variant}: {error}")
    if report.clean:
        console.print("all intact" if report.checked else "nothing archived to check")
        return
    console.print(
        f"{report.count(Action.REPAIR)} repair(s) queued, {report.count(Action.LOST)} lost, "
        f"{report.count(Action.DEFERRED)} deferred (upstream could not be asked), "
        f"{len(report.unreadable)} unreadable"
        + (
            f"; would repair {report.count(Action.WOULD_REPAIR)}, would mark lost {report.count(Action.WOULD_LOSE)}"
            if dry_run
            else ""
        )
    )
    raise typer.Exit(1)


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
    cli.command()(audit)
    cli.command()(smoke)
    cli.add_typer(webhooks_app, name="webhooks")
