"""`python -m bench run [--smoke] [--only NAME] [--repeat N] [--history-rows N]`,
`python -m bench soak --minutes M [--renders N]` and `python -m bench report`.

`run` measures each benchmark beside its same-run baseline, prints one table, writes
`bench/results/<date>.json`, the plots in `docs/benchmarks/` and regenerates `docs/benchmarks.md`.
`--smoke` runs tiny sizes once and writes only to a temporary directory (or `--out`), never to the repo.
The ingest and facade benchmarks measure again after filling their database with history (`bench.history`):
`--history-rows` rows (1,000,000; 3,000 with `--smoke`; 0 skips it).
`report` regenerates `docs/benchmarks.md` and `docs/scaling.md` (bench/scaling.py) from the results alone.
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import archive, burst, burst_gemini, facade, ingest, report
from bench.stack import MiB

BENCHMARKS = ("archive", "ingest", "burst", "facade", "burst_gemini")
# Videos of the full burst through the Gemini simulator, not the OpenAI burst's 1,000: each is a real render
# (about 0.35 s to draw) archived with two derived images (about 0.55 s of the stack), so a repeat of 200
# takes about 3.5 minutes on two cores and three fit in about 10 (1,000 would take about 15 per repeat).
GEMINI_VIDEOS = 200
# Rows of history the ingest and facade benchmarks add to their database before measuring again.
HISTORY_ROWS = 1_000_000
SMOKE_HISTORY_ROWS = 3_000


def _plans(
    smoke: bool, repeats: int, profile_dir: Path | None, history_rows: int | None = None
) -> dict[str, Callable[[Path], dict[str, Any]]]:
    if smoke:
        history = SMOKE_HISTORY_ROWS if history_rows is None else history_rows
        return {
            "archive": lambda w: archive.run(w, sizes=[1 * MiB, 4 * MiB, 16 * MiB], repeats=repeats, warmup_seconds=1),
            "ingest": lambda w: ingest.run(w, repeats=repeats, steps=[4], seconds=2, history_rows=history),
            "burst": lambda w: burst.run(w, videos=6, repeats=repeats, window_seconds=2, worker_counts=(1, 2)),
            "facade": lambda w: facade.run(
                w, requests=30, repeats=repeats, content_bytes=1 * MiB, history_rows=history
            ),
            "burst_gemini": lambda w: burst_gemini.run(w, videos=10, repeats=repeats, window_seconds=2),
        }
    history = HISTORY_ROWS if history_rows is None else history_rows
    return {
        "archive": lambda w: archive.run(
            w, sizes=[100 * MiB, 1024 * MiB, 4096 * MiB], repeats=repeats, profile_dir=profile_dir
        ),
        "ingest": lambda w: ingest.run(
            w, repeats=repeats, steps=[4, 8, 16, 32, 64], seconds=10, profile_dir=profile_dir, history_rows=history
        ),
        "burst": lambda w: burst.run(
            w, videos=1000, repeats=repeats, window_seconds=10, worker_counts=(1, 2, 4), profile_dir=profile_dir
        ),
        "facade": lambda w: facade.run(
            w, requests=300, repeats=repeats, content_bytes=100 * MiB, profile_dir=profile_dir, history_rows=history
        ),
        "burst_gemini": lambda w: burst_gemini.run(w, videos=GEMINI_VIDEOS, repeats=repeats, window_seconds=10),
    }


def run(args: argparse.Namespace) -> int:
    repeats = args.repeat or (1 if args.smoke else 3)
    names = [args.only] if args.only else list(BENCHMARKS)
    scratch = Path(tempfile.mkdtemp(prefix="vg-bench-"))
    if args.out:
        out_dir = Path(args.out)
    elif args.smoke:  # never into the repo; outlives the scratch directory removed below
        out_dir = Path(tempfile.mkdtemp(prefix="vg-bench-smoke-"))
    else:
        out_dir = report.RESULTS_DIR
    profile_dir = None if args.smoke or args.no_profile else scratch / "profiles"
    plans = _plans(args.smoke, repeats, profile_dir, args.history_rows)
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "command": "python -m bench " + shlex.join(sys.argv[1:]),
        "smoke": args.smoke,
        "repeats": repeats,
        "started_at": started.isoformat(timespec="seconds"),
        "machine": report.machine(),
        "versions": report.versions(),
        "git": report.git_commit(),
        "benchmarks": {},
        "errors": {},
    }
    for name in names:
        sys.stderr.write(f"[bench] {name} ({repeats} repeat{'s' if repeats > 1 else ''})...\n")
        began = time.monotonic()
        try:
            result["benchmarks"][name] = plans[name](scratch / name)
        except Exception as error:  # one broken benchmark must not hide the others' figures
            result["errors"][name] = f"{type(error).__name__}: {error}"
            sys.stderr.write(f"[bench] {name} FAILED: {error}\n")
        sys.stderr.write(f"[bench] {name} took {time.monotonic() - began:.0f} s\n")
    result["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    try:
        result["goals"] = report.check_goals(result["benchmarks"])
    except Exception as error:  # never lose the measurements to a bug in judging them
        result["goals"] = []
        result["errors"]["goals"] = f"{type(error).__name__}: {error}"
    if profile_dir is not None and profile_dir.exists():
        from bench.profile import summarize

        result["profiles"] = {path.stem: summarize(path) for path in sorted(profile_dir.glob("*.txt"))}
        # The raw collapsed stacks stay beside the results (a few hundred KB), for a closer look later.
        kept = out_dir / f"profiles-{report.today()}"
        shutil.copytree(profile_dir, kept, dirs_exist_ok=True)
    name = f"{report.today()}.json" if not args.only else f"{report.today()}-{args.only}.json"
    path = report.write_json(result, out_dir, name)
    report.print_table(result)
    sys.stdout.write(f"results: {path}\n")
    if not args.smoke and (not args.only or args.only in report.OWN_SECTIONS):
        # A benchmark with a section of its own in the doc is shown from its `--only` run too.
        for plot in report.plot(result, report.PLOTS_DIR):
            sys.stdout.write(f"plot: {plot}\n")
        sys.stdout.write(f"doc: {report.write_doc()}\n")
    if result["errors"]:
        sys.stderr.write(f"[bench] logs kept in {scratch}\n")
        return 1
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


def regenerate(args: argparse.Namespace) -> int:
    """The docs from the results already in bench/results/, nothing measured (the plots stay as the last run
    drew them)."""
    sys.stdout.write(f"doc: {report.write_doc()}\n")
    sys.stdout.write(f"doc: {report.DOCS_DIR / 'scaling.md'}\n")
    return 0


def soak(args: argparse.Namespace) -> int:
    from bench import soak as soak_module

    return soak_module.main(minutes=args.minutes, renders=args.renders, out=args.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run_parser = commands.add_parser("run", help="every benchmark beside its same-run baseline")
    run_parser.add_argument("--smoke", action="store_true", help="tiny sizes, one repeat, results to a temp dir")
    run_parser.add_argument("--only", choices=BENCHMARKS)
    run_parser.add_argument("--repeat", type=int, default=0, help="repeats (default 3; 1 with --smoke)")
    run_parser.add_argument("--out", help="directory for the results JSON")
    run_parser.add_argument("--no-profile", action="store_true", help="skip the py-spy profiles")
    run_parser.add_argument(
        "--history-rows",
        type=int,
        default=None,
        help=f"rows of history before ingest and facade measure again (default {HISTORY_ROWS:,}; "
        f"{SMOKE_HISTORY_ROWS:,} with --smoke; 0: skip)",
    )
    run_parser.set_defaults(handler=run)
    report_parser = commands.add_parser(
        "report", help="regenerate docs/benchmarks.md and docs/scaling.md from bench/results/, measuring nothing"
    )
    report_parser.set_defaults(handler=regenerate)
    soak_parser = commands.add_parser("soak", help="bounded soak with faults")
    soak_parser.add_argument("--minutes", type=float, default=20.0)
    soak_parser.add_argument("--renders", type=int, default=10_000)
    soak_parser.add_argument("--out", help="directory for the soak JSON (default bench/results)")
    soak_parser.set_defaults(handler=soak)
    return parser


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # `kill`, a CI timeout or `make` being stopped sends SIGTERM: leave through SystemExit so every stack's
    # `with` block stops its processes and private servers, as Ctrl-C does (the default would orphan them).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    args = build_parser().parse_args(argv)
    handler: Callable[[argparse.Namespace], int] = args.handler
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
