"""Operator commands: `video-gateway status | replay | reconcile | audit | webhooks list | smoke`, printed as tables.

They talk to Postgres (and, for `replay`, `reconcile` and `audit`, to upstream and S3) with the same settings
as the service, so an operator runs them from any API or worker pod.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import Annotated, TypeVar

import httpx
import typer
from botocore.exceptions import BotoCoreError, ClientError
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from app.archive import audit as archive_audit
from app.archive import queue, reconciler
from app.archive import service as archive_service
from app.archive.audit import Action
from app.archive.jobs import JobContext
from app.archive.storage import ArchiveStorage, make_client
from app.core.config import Settings, get_settings
from app.core.db import Database
from app.core.timestamps import short_duration
from app.models import JobState
from app.ops.cli_errors import CliError, http_problem, s3_endpoint, s3_unreachable, s3_unreachable_line
from app.ops.smoke import smoke
from app.upstream.router import UpstreamRouter
from app.webhooks import service as webhook_service

T = TypeVar("T")
# What a long command reports as it goes: done so far, and of how many (None: not known).
ProgressHook = Callable[[int, int | None], None]
# The audit's reachability check of S3: one attempt, short timeouts (the archive's client retries for longer).
S3_CHECK_TIMEOUT_SECONDS = 5.0


def _console() -> Console:
    # Built per command, so the terminal's width (or COLUMNS) at that moment is used.
    return Console()


def _show_progress() -> bool:
    """Progress is drawn only for a person: stderr is a terminal (tests and pipes get none)."""
    return sys.stderr.isatty()


def _progress_console() -> Console:
    return Console(stderr=True)


@contextmanager
def _progress(doing: str, *, then: str | None = None, unit: str = "") -> Iterator[ProgressHook | None]:
    """A transient progress display on stderr, on a terminal only: what is being done (`doing`, then `then` once
    the first report arrives), N of M (or a count of `unit` when M is not known) and the time elapsed.

    Yields the hook to report to, or None when nothing is drawn. What the command prints is unchanged: the
    display is gone before the results are printed, and stdout is left alone (it may be a file or a pipe).
    """
    if not _show_progress():
        yield None
        return
    columns = (
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[count]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=_progress_console(), transient=True, redirect_stdout=False) as display:
        task = display.add_task(doing, total=None, count="")

        def report(done: int, total: int | None) -> None:
            count = f"{done} of {total}" if total is not None else f"{done} {unit}".rstrip()
            display.update(task, description=then or doing, completed=done, total=total, count=count)

        yield report


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
        for state in JobState:
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

    with _progress(f"replay {video_id}: asking upstream", then=f"replay {video_id}: queueing downloads") as hook:

        async def work(context: JobContext) -> archive_service.ReplayOutcome:
            async with context.database.transaction() as session:
                return await archive_service.replay(
                    session,
                    video_id=video_id,
                    settings=context.settings,
                    upstreams=context.upstreams,
                    on_progress=hook,
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

    with _progress("reconcile: looking at videos", unit="video(s)") as hook:

        async def work(context: JobContext) -> reconciler.ReconcileReport:
            return await reconciler.reconcile_once(
                context, since=datetime.now(UTC) - timedelta(hours=since), on_progress=hook
            )

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

    how = "HEAD and a full SHA-256 read" if sha256 else "HEAD: presence and size"
    checking = f"audit: checking objects ({'HEAD + SHA-256' if sha256 else 'HEAD'}{', dry run' if dry_run else ''})"
    with _progress("audit: picking objects to check", then=checking) as hook:

        async def work(context: JobContext) -> archive_audit.AuditReport:
            await _require_s3(context.settings)
            return await archive_audit.audit_once(
                context, limit=limit, video_id=video, full_hash=sha256, dry_run=dry_run, on_progress=hook
            )

        report = _with_context(work)
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


async def _require_s3(settings: Settings) -> None:
    """Fail at once, in one line, when S3 cannot be reached at all (rather than one "could not check" per
    object). An S3 that answers, even with an error, is left to the audit, which reports per object."""
    client = make_client(
        settings.s3,
        connect_timeout=S3_CHECK_TIMEOUT_SECONDS,
        read_timeout=S3_CHECK_TIMEOUT_SECONDS,
        max_attempts=1,
    )
    try:
        await asyncio.to_thread(client.head_bucket, Bucket=settings.s3.bucket)
    except (ClientError, BotoCoreError) as exc:
        if s3_unreachable(exc):
            raise CliError(s3_unreachable_line(s3_endpoint(settings), exc)) from exc
    finally:
        client.close()


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
        try:
            text = httpx.get(f"{api_url.rstrip('/')}/metrics", timeout=10).text
        except httpx.RequestError as exc:
            hint = "is the API running there? (--api-url or VG_OPS_API_URL)"
            raise CliError(http_problem(exc, hint=hint)) from exc
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
