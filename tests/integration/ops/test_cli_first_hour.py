"""A new operator's first hour with `video-gateway`, against the real local Postgres: the CLI works from the checkout
with no variable exported (`.devstack/cli.env`), a mistake is one line that says what to do, and the long commands
show progress on a terminal without changing what they print."""

from __future__ import annotations

import io
import os
import re
import shlex
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner, Result

from app.auth import keys
from app.cli import cli
from app.core.config import S3Settings, get_settings
from app.ops import cli as ops_cli
from tests.support import postgres
from tests.support.ops import ThreadedSimulator, make_video_sync, seed_archived

CONSOLE_SCRIPT = Path(sys.executable).parent / "video-gateway"

runner = CliRunner()


def one_line(result: Result) -> str:
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.output
    return lines[0]


def already_exists(name: str) -> str:
    return (
        f"error: a caller named '{name}' already exists; "
        f"`video-gateway keys create {shlex.quote(name)}` issues it another key"
    )


class TestCreateCaller:
    def test_a_second_create_caller_is_one_line_pointing_at_keys_create(self, ops_database: str) -> None:
        name = f"first-hour-{uuid.uuid4().hex[:8]}"
        first = runner.invoke(cli, ["create-caller", name])
        assert first.exit_code == 0, first.output
        key = first.stdout.strip()
        assert keys.looks_like_key(key)

        second = runner.invoke(cli, ["create-caller", name])
        assert second.exit_code == 1
        assert one_line(second) == already_exists(name)
        assert "Traceback" not in second.output and second.stdout == ""

        # What the line suggests works, and issues another key.
        another = runner.invoke(cli, ["keys", "create", name])
        assert another.exit_code == 0, another.output
        assert keys.looks_like_key(another.stdout.strip()) and another.stdout.strip() != key

    def test_a_name_that_needs_quoting_is_quoted_in_the_suggestion(self, ops_database: str) -> None:
        name = f"team {uuid.uuid4().hex[:6]}"
        assert runner.invoke(cli, ["create-caller", name]).exit_code == 0
        again = runner.invoke(cli, ["create-caller", name])
        assert one_line(again) == already_exists(name) and f"keys create '{name}'" in again.stderr

    def test_keys_create_for_an_unknown_caller_says_how_to_create_it(self, ops_database: str) -> None:
        name = f"nobody-{uuid.uuid4().hex[:8]}"
        result = runner.invoke(cli, ["keys", "create", name])
        assert result.exit_code == 1
        assert one_line(result) == (
            f"error: No caller named '{name}'; add --create-caller, or run `video-gateway create-caller {name}`, "
            "to create it"
        )


def test_a_database_without_the_schema_says_migrate() -> None:
    name = postgres.create_database("vg_unmigrated")
    try:
        env = {"VG_MODE": "dev", "VG_DB__URL": postgres.sqlalchemy_url(name)}
        get_settings.cache_clear()
        result = runner.invoke(cli, ["status"], env=env)
        assert result.exit_code == 1
        assert re.fullmatch(
            rf"error: the database at [\w.]+:\d+/{name} has no schema yet \(relation \"\w+\" does not exist\); "
            r"run `video-gateway migrate` first",
            one_line(result),
        ), result.stderr
    finally:
        get_settings.cache_clear()
        postgres.drop_database(name)


def test_audit_with_s3_down_is_one_line_naming_the_endpoint(ops_database: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("VG_S3__ENDPOINT_URL", f"http://127.0.0.1:{port}")
    get_settings.cache_clear()
    result = runner.invoke(cli, ["audit"])
    assert result.exit_code == 1
    assert one_line(result) == (
        f"error: cannot reach S3 at http://127.0.0.1:{port} (connection refused); is it running? (VG_S3__ENDPOINT_URL)"
    )


# ----- the console script, in a checkout after `make run` ---------------------------------------


def test_the_console_script_reads_the_checkouts_cli_env(ops_database: str, tmp_path: Path) -> None:
    """What `make run` leaves is enough: from anywhere in the checkout, with no VG_ variable exported."""
    (tmp_path / ".git").mkdir()
    (tmp_path / ".devstack").mkdir()
    (tmp_path / ".devstack" / "cli.env").write_text(f"VG_MODE=dev\nVG_DB__URL={ops_database}\n", encoding="utf-8")
    somewhere = tmp_path / "docs"
    somewhere.mkdir()
    environment = {name: value for name, value in os.environ.items() if not name.startswith("VG_")}
    environment["COLUMNS"] = "200"

    def video_gateway(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(CONSOLE_SCRIPT), *args],
            cwd=somewhere,
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    status = video_gateway("status")
    assert status.returncode == 0, status.stderr
    assert "Archive queue" in status.stdout and status.stderr == ""
    name = f"script-{uuid.uuid4().hex[:8]}"
    created = video_gateway("create-caller", name)
    assert created.returncode == 0, created.stderr
    assert keys.looks_like_key(created.stdout.strip())
    again = video_gateway("create-caller", name)
    assert again.returncode == 1
    assert again.stderr.splitlines() == [already_exists(name)]


# ----- progress ---------------------------------------------------------------------------------


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """Progress drawn as on a terminal, into this buffer (stdout stays the runner's)."""
    screen = io.StringIO()
    monkeypatch.setattr(ops_cli, "_show_progress", lambda: True)
    monkeypatch.setattr(ops_cli, "_progress_console", lambda: Console(file=screen, force_terminal=True, width=160))
    yield screen


def test_reconcile_shows_progress_and_prints_the_same(ops_database: str, upstream: ThreadedSimulator) -> None:
    make_video_sync(ops_database, status="in_progress")
    plain = runner.invoke(cli, ["reconcile"])
    assert plain.exit_code == 0, plain.output
    screen = io.StringIO()
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ops_cli, "_show_progress", lambda: True)
        patch.setattr(ops_cli, "_progress_console", lambda: Console(file=screen, force_terminal=True, width=160))
        shown = runner.invoke(cli, ["reconcile"])
    assert shown.exit_code == 0, shown.output
    assert re.fullmatch(r"queued \d+ sync\(s\) and \d+ download\(s\)\n", shown.stdout), shown.stdout
    assert shown.stderr == "" and plain.stderr == ""
    assert "reconcile: looking at videos" in screen.getvalue() and "video(s)" in screen.getvalue()


def test_replay_shows_progress_and_prints_the_same(
    ops_database: str, upstream: ThreadedSimulator, terminal: io.StringIO
) -> None:
    video_id = make_video_sync(ops_database, upstream_id=upstream.completed_video())
    result = runner.invoke(cli, ["replay", video_id])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"queued 3 download(s) for {video_id}; a worker picks them up")
    drawn = terminal.getvalue()
    assert f"replay {video_id}: queueing downloads" in drawn and "3 of 3" in drawn


def test_audit_shows_progress_and_prints_the_same(
    ops_database: str, ops_s3: S3Settings, upstream: ThreadedSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    video_id = make_video_sync(ops_database, upstream_id=upstream.completed_video())
    seed_archived(ops_database, ops_s3, video_id)
    plain = runner.invoke(cli, ["audit", "--video", video_id], terminal_width=250)
    assert plain.exit_code == 0, plain.output
    screen = io.StringIO()
    monkeypatch.setattr(ops_cli, "_show_progress", lambda: True)
    monkeypatch.setattr(ops_cli, "_progress_console", lambda: Console(file=screen, force_terminal=True, width=160))
    shown = runner.invoke(cli, ["audit", "--video", video_id], terminal_width=250)
    assert shown.exit_code == 0, shown.output
    assert shown.stdout == plain.stdout and "3 object(s) checked" in shown.stdout
    drawn = screen.getvalue()
    assert "audit: checking objects (HEAD)" in drawn and "3 of 3" in drawn
