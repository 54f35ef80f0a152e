"""The operator CLI's failures: one `error: <what happened>; <what to do>` line on stderr and exit 1, a traceback only
with --debug (or VG_DEBUG=1), never a secret; and the checkout's `.devstack/cli.env` read by the console script.

The console script runs as a subprocess in a controlled environment (no VG_ variable but those a test sets) from a
temporary "checkout" (a directory with a `.git` marker), so nothing of this machine's own checkout is read.
"""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy.exc import IntegrityError, OperationalError
from typer.testing import CliRunner

from app.cli import cli
from app.core.config import Mode, Settings, UpstreamSettings, get_settings, load_settings
from app.core.errors import ResourceNotFound
from app.ops import cli as ops_cli
from app.ops.cli_errors import CliError, error_line

CONSOLE_SCRIPT = Path(sys.executable).parent / "video-gateway"
PASSWORD = "hunter2-Sup3rSecret"
SETTINGS_HINT = "run `make run` in this checkout first (it writes .devstack/cli.env), or set VG_MODE=dev"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


def unreachable_url(port: int, password: str = PASSWORD) -> str:
    return f"postgresql+asyncpg://gateway:{password}@127.0.0.1:{port}/vg_nowhere"


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """A checkout of its own: the `.git` marker stops the search for `.devstack/cli.env` there."""
    (tmp_path / ".git").mkdir()
    return tmp_path


def write_cli_env(checkout: Path, **values: str) -> None:
    devstack = checkout / ".devstack"
    devstack.mkdir(exist_ok=True)
    (devstack / "cli.env").write_text(
        "# written by the test\n" + "".join(f"{name}={value}\n" for name, value in values.items()), encoding="utf-8"
    )


def run_cli(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """`video-gateway ARGS` from `cwd`, with this process's environment minus every VG_ variable, plus `env`."""
    environment = {name: value for name, value in os.environ.items() if not name.startswith("VG_")}
    environment.update(env, COLUMNS="200")
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def only_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


# ----- the console script -----------------------------------------------------------------------


class TestConsoleScript:
    def test_missing_settings_are_one_line_naming_the_setting_and_make_run(self, checkout: Path) -> None:
        result = run_cli("status", cwd=checkout)
        assert result.returncode == 1, result.stderr
        line = only_line(result.stderr)
        assert line.startswith("error: invalid settings: VG_UPSTREAM__API_KEY is unset or a placeholder; ")
        assert "make run" in line and ".devstack/cli.env" in line and "VG_MODE=dev" in line
        assert "docs/configuration.md" in line
        assert "Traceback" not in result.stderr and result.stdout == ""

    @pytest.mark.parametrize("how", ["--debug", "VG_DEBUG=1"])
    def test_debug_shows_the_traceback_instead(self, checkout: Path, how: str) -> None:
        if how == "--debug":
            result = run_cli("--debug", "status", cwd=checkout)
        else:
            result = run_cli("status", cwd=checkout, VG_DEBUG="1")
        assert result.returncode == 1
        assert "Traceback" in result.stderr and "ValidationError" in result.stderr
        assert len(result.stderr.splitlines()) > 5
        assert not any(line.startswith("error: ") for line in result.stderr.splitlines())

    def test_usage_errors_stay_typers_own(self, checkout: Path) -> None:
        result = run_cli("status", "--within", "soon", cwd=checkout)
        assert result.returncode == 2
        assert "Invalid value" in result.stderr and "error: " not in result.stderr

    def test_cli_env_of_the_checkout_is_read_from_a_subdirectory(self, checkout: Path) -> None:
        port = closed_port()
        write_cli_env(checkout, VG_MODE="dev", VG_DB__URL=unreachable_url(port))
        deeper = checkout / "app" / "ops"
        deeper.mkdir(parents=True)
        result = run_cli("status", cwd=deeper)
        assert result.returncode == 1, result.stderr
        # Past the settings (VG_MODE=dev came from the file) to the database the file names.
        assert only_line(result.stderr) == (
            f"error: cannot reach Postgres at 127.0.0.1:{port}/vg_nowhere (connection refused); "
            "is it running? (VG_DB__URL)"
        )
        assert PASSWORD not in result.stderr and "gateway:" not in result.stderr

    def test_an_exported_variable_wins_over_the_file(self, checkout: Path) -> None:
        file_port, exported_port = closed_port(), closed_port()
        write_cli_env(checkout, VG_MODE="dev", VG_DB__URL=unreachable_url(file_port))
        result = run_cli("status", cwd=checkout, VG_DB__URL=unreachable_url(exported_port, "other-Secret-pw"))
        line = only_line(result.stderr)
        assert f"127.0.0.1:{exported_port}/vg_nowhere" in line
        assert "other-Secret-pw" not in line and PASSWORD not in line
        if file_port != exported_port:
            assert f":{file_port}/" not in line
        # Production, exported, wins over the file's dev mode: the settings are refused again.
        production = run_cli("status", cwd=checkout, VG_MODE="production")
        assert only_line(production.stderr).startswith("error: invalid settings: VG_UPSTREAM__API_KEY")

    def test_no_file_is_read_past_the_checkout_root(self, tmp_path: Path) -> None:
        write_cli_env(tmp_path, VG_MODE="dev", VG_DB__URL=unreachable_url(closed_port()))
        inner = tmp_path / "other-checkout"
        (inner / ".git").mkdir(parents=True)
        result = run_cli("status", cwd=inner)
        assert only_line(result.stderr).startswith("error: invalid settings: ")


# ----- in process: the root group's handling ----------------------------------------------------


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., None]]:
    """Set exactly these VG_ variables (all others removed) for a CliRunner run of the root app."""

    def use(**values: str) -> None:
        for name in list(os.environ):
            if name.startswith("VG_"):
                monkeypatch.delenv(name)
        for name, value in values.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()

    yield use
    get_settings.cache_clear()


class TestRootGroup:
    def test_unreachable_postgres_is_one_line_without_the_password(self, environment: Callable[..., None]) -> None:
        port = closed_port()
        environment(VG_MODE="dev", VG_DB__URL=unreachable_url(port))
        result = CliRunner().invoke(cli, ["webhooks", "list"])
        assert result.exit_code == 1
        assert only_line(result.stderr).startswith(f"error: cannot reach Postgres at 127.0.0.1:{port}/vg_nowhere (")
        assert PASSWORD not in result.output and result.stdout == ""

    def test_keys_commands_get_the_same_treatment(self, environment: Callable[..., None]) -> None:
        environment()
        result = CliRunner().invoke(cli, ["keys", "list"])
        assert result.exit_code == 1
        assert only_line(result.stderr).startswith("error: invalid settings: VG_UPSTREAM__API_KEY")

    def test_a_field_error_names_its_variable(self, environment: Callable[..., None]) -> None:
        environment(VG_MODE="dev", VG_DB__POOL_SIZE="0", VG_WORKER__CONCURRENCY="many")
        result = CliRunner().invoke(cli, ["status"])
        line = only_line(result.stderr)
        assert line.startswith("error: invalid settings: VG_DB__POOL_SIZE: ")
        assert "VG_WORKER__CONCURRENCY: " in line and SETTINGS_HINT in line
        assert "many" not in line  # the input is not repeated (it might be a secret)

    def test_an_unreadable_secret_file_names_its_variable(
        self, environment: Callable[..., None], tmp_path: Path
    ) -> None:
        missing = tmp_path / "no-such-secret"
        environment(VG_MODE="dev", VG_UPSTREAM__API_KEY_FILE=str(missing))
        result = CliRunner().invoke(cli, ["status"])
        assert result.exit_code == 1
        assert only_line(result.stderr) == (
            f"error: cannot read {missing} (No such file or directory), named by VG_UPSTREAM__API_KEY_FILE; "
            "fix the path or unset it"
        )


# ----- the lines themselves ---------------------------------------------------------------------


def dev_settings(**overrides: object) -> Settings:
    return load_settings(mode=Mode.DEV, **overrides)


class TestErrorLine:
    def test_anything_else_names_its_type_and_points_at_debug(self) -> None:
        assert error_line(RuntimeError("boom\nsecond line")) == (
            "error: RuntimeError: boom second line (run with --debug for the traceback)"
        )

    def test_secrets_of_the_settings_are_masked(self) -> None:
        settings = dev_settings(
            upstream=UpstreamSettings(api_key="sk-live-0123456789"),
            db={"url": unreachable_url(5432)},
        )
        line = error_line(ValueError(f"sent sk-live-0123456789 to {PASSWORD}"), settings=settings)
        assert "sk-live-0123456789" not in line and PASSWORD not in line
        assert line == "error: ValueError: sent *** to *** (run with --debug for the traceback)"

    def test_without_settings_secret_variables_are_masked(self, environment: Callable[..., None]) -> None:
        environment(VG_UPSTREAM__API_KEY="sk-env-only-987654", VG_DB__URL=unreachable_url(5432))
        line = error_line(RuntimeError(f"echoed sk-env-only-987654 and {PASSWORD}"))
        assert line == "error: RuntimeError: echoed *** and *** (run with --debug for the traceback)"

    def test_own_errors_are_said_as_they_are(self) -> None:
        assert error_line(CliError("a caller named 'x' already exists; do y")) == (
            "error: a caller named 'x' already exists; do y"
        )
        assert error_line(ResourceNotFound("No caller named 'x'.")) == "error: No caller named 'x'."

    def test_a_lost_connection_reported_by_sqlalchemy_is_postgres(self) -> None:
        settings = dev_settings(db={"url": unreachable_url(6543)})
        lost = OperationalError("SELECT 1", {}, ConnectionResetError("reset by peer"))
        assert error_line(lost, settings=settings) == (
            "error: cannot reach Postgres at 127.0.0.1:6543/vg_nowhere (connection lost); is it running? (VG_DB__URL)"
        )

    def test_a_bad_statement_is_not_called_unreachable(self) -> None:
        duplicate = IntegrityError("INSERT", {}, Exception("duplicate key value violates unique constraint"))
        line = error_line(duplicate, settings=dev_settings())
        assert line.startswith("error: IntegrityError: ") and "cannot reach" not in line

    def test_unreachable_s3_names_the_endpoint(self) -> None:
        from botocore.exceptions import EndpointConnectionError

        from app.archive.storage import StorageError

        settings = dev_settings(s3={"endpoint_url": "http://s3.internal:8333"})
        cause = EndpointConnectionError(endpoint_url="http://s3.internal:8333/video-gateway")
        try:
            raise StorageError.from_botocore(cause, "head_object") from cause
        except StorageError as exc:
            line = error_line(exc, settings=settings)
        assert line == (
            "error: cannot reach S3 at http://s3.internal:8333 (could not connect); "
            "is it running? (VG_S3__ENDPOINT_URL)"
        )


# ----- progress ---------------------------------------------------------------------------------


class TestProgress:
    def test_nothing_is_drawn_unless_stderr_is_a_terminal(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setattr(ops_cli, "_show_progress", lambda: False)
        with ops_cli._progress("audit") as hook:
            assert hook is None

    def test_a_terminal_sees_what_how_far_and_how_long(self, monkeypatch: pytest.MonkeyPatch) -> None:
        screen = io.StringIO()
        monkeypatch.setattr(ops_cli, "_show_progress", lambda: True)
        monkeypatch.setattr(ops_cli, "_progress_console", lambda: Console(file=screen, force_terminal=True, width=120))
        with ops_cli._progress("audit: picking objects", then="audit: checking objects") as hook:
            assert hook is not None
            hook(0, 3)
            hook(2, 3)
        drawn = screen.getvalue()
        assert "audit: checking objects" in drawn and "2 of 3" in drawn and "0:00:0" in drawn
        with ops_cli._progress("reconcile: looking at videos", unit="video(s)") as hook:
            assert hook is not None
            hook(7, None)
        assert "7 video(s)" in screen.getvalue()
