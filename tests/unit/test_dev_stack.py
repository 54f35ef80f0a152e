"""`make run`'s own logic, without starting it: the per-checkout database, the port check, the callback
receiver's signature check, `.devstack/cli.env`, the dev admin key, its output."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from rich.console import Console
from standardwebhooks import Webhook

from app.cli import reads_checkout_env
from app.core.config import Mode, Settings, load_settings
from app.core.local_env import load_checkout_env, read_env_file, write_env_file
from app.dev import stack
from app.dev.checkout import (
    Listener,
    PortInUse,
    check_ports,
    checkout_database_name,
    checkout_database_url,
    port_free,
)
from app.dev.processes import ManagedProcess, free_port, stop_all
from app.dev.progress import PlainReporter, RichReporter, Step, make_reporter
from app.dev.receiver import CallbackReceiver, ReceivedCallback
from app.dev.seaweedfs import SeaweedPorts

IDENTIFIER = re.compile(r"^[a-z0-9_]+$")
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_" + "A" * 32


def dev_settings(**overrides: Any) -> Settings:
    return load_settings(mode=Mode.DEV, **overrides)


# ----- the database of a checkout ---------------------------------------------------------------------


class TestDatabaseName:
    def test_two_checkouts_with_the_same_dir_name_get_different_databases(self, tmp_path: Path) -> None:
        first, second = tmp_path / "a" / "video-gateway", tmp_path / "b" / "video-gateway"
        assert checkout_database_name(first) != checkout_database_name(second)
        assert checkout_database_name(first).startswith("video_gateway_video_gateway_")

    def test_the_same_checkout_always_gets_the_same_database(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        checkout = tmp_path / "main"
        checkout.mkdir()
        monkeypatch.chdir(tmp_path)
        assert checkout_database_name(checkout) == checkout_database_name(Path("main"))
        assert checkout_database_name(checkout) == checkout_database_name(checkout / "." / "x" / "..")

    @pytest.mark.parametrize(
        "name", ["main", "My Checkout (copy 2)", "vidéo-gateway", "x" * 300, "---", "Video_Gateway.ÜBER.v2" * 9]
    )
    def test_a_valid_postgres_identifier_of_at_most_63_characters(self, tmp_path: Path, name: str) -> None:
        database = checkout_database_name(tmp_path / name)
        assert IDENTIFIER.match(database), database
        assert len(database) <= 63, database
        assert database.startswith("video_gateway_")
        assert "__" not in database and not database.endswith("_")
        assert re.search(r"_[0-9a-f]{8}$", database), database

    def test_unless_chosen_it_is_the_checkouts_database_on_the_local_server(self, tmp_path: Path) -> None:
        url, explicit = checkout_database_url(
            "postgresql+asyncpg://postgres:pw@db.local:6543/video_gateway", tmp_path / "main", environ={}
        )
        assert not explicit
        assert url == f"postgresql+asyncpg://postgres@127.0.0.1:5432/{checkout_database_name(tmp_path / 'main')}"

    def test_an_explicit_vg_db_url_wins(self, tmp_path: Path) -> None:
        chosen = "postgresql+asyncpg://postgres@127.0.0.1:5432/mine"
        assert checkout_database_url(chosen, tmp_path, environ={"VG_DB__URL": chosen}) == (chosen, True)
        assert checkout_database_url(chosen, tmp_path, environ={"VG_DB__URL_FILE": "/run/db-url"}) == (chosen, True)

    def test_the_cli_never_reads_cli_env_for_dev_so_a_previous_runs_url_is_no_choice(self) -> None:
        # `make run` writes VG_DB__URL to .devstack/cli.env; were `dev` to read it back, the next run would
        # take the previous one's database for the operator's choice.
        assert not reads_checkout_env(["dev"]) and not reads_checkout_env(["--debug", "dev"])
        # Nor do the service's processes (the stacks that start them give them their whole environment).
        assert not any(reads_checkout_env([role]) for role in ("serve", "worker", "simulator"))
        assert reads_checkout_env(["status"]) and reads_checkout_env(["keys", "create", "dev"])

    def test_vg_checkout_env_0_turns_the_file_off(self, tmp_path: Path) -> None:
        (tmp_path / ".git").mkdir()
        write_env_file(tmp_path / ".devstack" / "cli.env", {"VG_MODE": "dev"})
        environ = {"VG_CHECKOUT_ENV": "0"}
        assert load_checkout_env(environ, start=tmp_path) is None
        assert environ == {"VG_CHECKOUT_ENV": "0"}
        environ = {}
        assert load_checkout_env(environ, start=tmp_path) is not None
        assert environ == {"VG_MODE": "dev"}


# ----- ports ---------------------------------------------------------------------------------------


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


class TestPorts:
    def test_a_taken_port_is_named_in_one_exact_line(self, busy_port: int) -> None:
        free = free_port()
        with pytest.raises(PortInUse) as refused:
            check_ports([Listener(free, "simulator"), Listener(busy_port, "API")])
        assert str(refused.value) == f"port {busy_port} is in use (another `make run`?)"
        assert refused.value.listener.port == busy_port

    def test_free_ports_pass(self) -> None:
        ports = [free_port(), free_port()]
        check_ports([Listener(port, "x") for port in ports])
        assert all(port_free(port) for port in ports)

    def test_every_port_the_stack_binds_is_checked(self) -> None:
        settings = dev_settings()
        seaweed = SeaweedPorts.dev()
        ports = [listener.port for listener in stack.listeners(settings, seaweed, receiver_port=8102)]
        assert ports[0] == 8000  # the API's port is the one named first
        assert {8000, 8100, 8102, 8333, *seaweed.all_ports()} == set(ports)
        assert 8101 not in ports
        gemini = dev_settings(demo_provider="gemini")
        assert 8101 in [listener.port for listener in stack.listeners(gemini, seaweed, receiver_port=8102)]

    def test_seaweedfs_is_started_on_exactly_the_checked_ports(self) -> None:
        arguments = SeaweedPorts.dev().arguments()
        assert "-s3.port=8333" in arguments
        bound = {int(argument.split("=")[1]) for argument in arguments if re.match(r"-\S+\.port(\.grpc)?=", argument)}
        assert bound == set(SeaweedPorts.dev().all_ports())
        # Everything else weed would open is switched off.
        assert {"-webdav=false", "-s3.port.iceberg=0", "-s3.port.lance=0"} <= set(arguments)

    def test_run_dev_stack_stops_at_once_with_status_1_and_one_line(
        self, busy_port: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        monkeypatch.chdir(tmp_path)
        monkeypatch.delenv("VG_DB__URL", raising=False)
        settings = dev_settings(api={"port": busy_port})
        with pytest.raises(SystemExit) as exited:
            stack.run_dev_stack(settings)
        assert exited.value.code == 1
        captured = capsys.readouterr()
        assert captured.out == ""
        assert captured.err == f"port {busy_port} is in use (another `make run`?)\n"
        assert not (tmp_path / ".devstack").exists()  # nothing was started or written


# ----- the callback receiver -----------------------------------------------------------------------


def event(event_type: str = "video.archived", video_id: str = "video_abc") -> str:
    return json.dumps({"id": "evt_1", "object": "event", "type": event_type, "data": {"id": video_id}})


def signed(body: str, secret: str = SECRET, *, webhook_id: str = "msg_1", at: datetime | None = None) -> dict[str, str]:
    timestamp = (at or datetime.now(UTC)).replace(microsecond=0)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(timestamp.timestamp())),
        "webhook-signature": Webhook(secret).sign(webhook_id, timestamp, body),
        "content-type": "application/json",
    }


Tamper = Callable[[str, dict[str, str]], tuple[str, dict[str, str]]]


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[CallbackReceiver]:
    seen: list[ReceivedCallback] = []
    receiver = CallbackReceiver(SECRET, log_path=tmp_path / "logs" / "callbacks.log", port=0, on_event=seen.append)
    receiver.start()
    try:
        yield receiver
    finally:
        receiver.stop()
    assert seen == receiver.events  # every verified event was reported, nothing else


class TestCallbackReceiver:
    def test_a_correctly_signed_delivery_is_verified_logged_and_reported(
        self, receiver: CallbackReceiver, tmp_path: Path
    ) -> None:
        body = event()
        response = httpx.post(receiver.url, content=body, headers=signed(body, webhook_id="msg_42"))
        assert response.status_code == 204, response.text
        assert [(e.type, e.video_id, e.webhook_id) for e in receiver.events] == [
            ("video.archived", "video_abc", "msg_42")
        ]
        line = (tmp_path / "logs" / "callbacks.log").read_text().strip()
        assert line.endswith("video.archived video_abc webhook-id=msg_42 verified"), line
        found = receiver.wait_for("video_abc", ("video.archived",), timeout=1)
        assert found is not None and found.webhook_id == "msg_42"

    @pytest.mark.parametrize(
        "tamper",
        [
            pytest.param(lambda body, headers: (body, signed(body, OTHER_SECRET)), id="another secret"),
            pytest.param(lambda body, headers: (body.replace("abc", "abd"), headers), id="changed body"),
            pytest.param(lambda body, headers: (body, {**headers, "webhook-id": "msg_2"}), id="changed id"),
            pytest.param(
                lambda body, headers: (body, signed(body, at=datetime.now(UTC) - timedelta(minutes=6))), id="too old"
            ),
            pytest.param(lambda body, headers: (body, {**headers, "webhook-signature": "v1"}), id="malformed"),
            pytest.param(
                lambda body, headers: (body, {k: v for k, v in headers.items() if k != "webhook-signature"}),
                id="unsigned",
            ),
        ],
    )
    def test_a_bad_signature_is_refused_and_not_recorded(
        self, receiver: CallbackReceiver, tmp_path: Path, tamper: Tamper
    ) -> None:
        body = event()
        sent_body, headers = tamper(body, signed(body))
        response = httpx.post(receiver.url, content=sent_body, headers=headers)
        assert response.status_code == 401, response.text
        assert receiver.events == []
        assert not (tmp_path / "logs" / "callbacks.log").exists()
        assert receiver.wait_for("video_abc", ("video.archived",), timeout=0.2) is None

    def test_a_signed_body_that_is_not_an_event_is_400(self, receiver: CallbackReceiver) -> None:
        for body in ("not json", "[1, 2]"):
            response = httpx.post(receiver.url, content=body, headers=signed(body))
            assert response.status_code == 400
        assert receiver.events == []

    def test_other_paths_are_404(self, receiver: CallbackReceiver) -> None:
        body = event()
        response = httpx.post(receiver.url.replace("/callbacks", "/other"), content=body, headers=signed(body))
        assert response.status_code == 404

    def test_an_event_is_reported_before_a_waiter_wakes(self, tmp_path: Path) -> None:
        """`make run` prints its last lines when `wait_for` returns: the event's note must already be out."""
        order: list[str] = []

        def report(received: ReceivedCallback) -> None:
            time.sleep(0.3)  # a slow terminal: the waiter must still not get ahead of the note
            order.append("note")

        receiver = CallbackReceiver(SECRET, log_path=tmp_path / "cb.log", port=0, on_event=report).start()
        try:

            def wait() -> None:
                if receiver.wait_for("video_abc", ("video.archived",), timeout=5) is not None:
                    order.append("woke")

            waiter = threading.Thread(target=wait)
            waiter.start()
            body = event()
            assert httpx.post(receiver.url, content=body, headers=signed(body)).status_code == 204
            waiter.join(timeout=5)
            assert order == ["note", "woke"]
        finally:
            receiver.stop()

    def test_a_rotated_secret_is_fetched_again(self, tmp_path: Path) -> None:
        asked: list[str] = []

        def current() -> str:
            asked.append("secret")
            return OTHER_SECRET

        receiver = CallbackReceiver(SECRET, log_path=tmp_path / "cb.log", port=0, refresh_secret=current).start()
        try:
            body = event()
            assert httpx.post(receiver.url, content=body, headers=signed(body, OTHER_SECRET)).status_code == 204
            assert httpx.post(receiver.url, content=body, headers=signed(body, OTHER_SECRET)).status_code == 204
            assert asked == ["secret"]  # once, then the new secret is kept
            assert httpx.post(receiver.url, content=body, headers=signed(body, "whsec_" + "B" * 32)).status_code == 401
        finally:
            receiver.stop()


# ----- .devstack/cli.env and the dev admin key -------------------------------------------------------


class TestCliEnv:
    def test_it_holds_the_stacks_environment_owner_only(self, tmp_path: Path) -> None:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{checkout_database_name(tmp_path)}"
        settings = stack.with_database(dev_settings(), url)
        admin_key = stack.dev_admin_key(tmp_path / ".devstack")
        env = stack.child_env(settings, webhook_secret=SECRET, admin_key=admin_key)
        path = tmp_path / ".devstack" / "cli.env"
        stack.write_cli_env(path, settings, env)

        values = read_env_file(path)
        assert values["VG_MODE"] == "dev"
        assert values["VG_DB__URL"] == url
        assert values["VG_ADMIN_API_KEY"] == admin_key and admin_key.startswith("vg-admin-")
        assert values["VG_WEBHOOKS__SECRETS"] == SECRET
        assert values["VG_S3__ENDPOINT_URL"] == "http://127.0.0.1:8333"
        assert values["VG_UPSTREAM__BASE_URL"] == "http://127.0.0.1:8100/v1"
        assert json.loads(values["VG_UPSTREAMS"]) == {}
        assert {name for name in env} <= set(values)  # everything the processes run with
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_the_cli_of_the_checkout_gets_the_same_settings_from_it(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{checkout_database_name(tmp_path)}"
        settings = stack.with_database(dev_settings(), url)
        env = stack.child_env(settings, webhook_secret=SECRET, admin_key="vg-admin-test")
        stack.write_cli_env(tmp_path / ".devstack" / "cli.env", settings, env)
        for name in [name for name in os.environ if name.startswith("VG_")]:
            monkeypatch.delenv(name)
        (tmp_path / ".git").mkdir()
        environ: dict[str, str] = {}
        assert load_checkout_env(environ, start=tmp_path) == tmp_path / ".devstack" / "cli.env"
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        loaded = load_settings()
        assert loaded.is_dev
        assert loaded.db.url.get_secret_value() == url
        assert loaded.admin_api_key is not None and loaded.admin_api_key.get_secret_value() == "vg-admin-test"

    def test_the_admin_key_is_made_once_owner_only(self, tmp_path: Path) -> None:
        first = stack.dev_admin_key(tmp_path)
        assert stack.dev_admin_key(tmp_path) == first
        assert (tmp_path / "admin-key").read_text().strip() == first
        assert stat.S_IMODE((tmp_path / "admin-key").stat().st_mode) == 0o600
        assert stack.dev_admin_key(tmp_path / "other") != first


# ----- what it prints --------------------------------------------------------------------------------


class TestOutput:
    def test_without_a_terminal_progress_is_plain_make_run_lines(self) -> None:
        out = io.StringIO()
        reporter = make_reporter([Step("render", "render", "rendering the demo video", total=100)], stream=out)
        assert isinstance(reporter, PlainReporter)
        reporter.begin("render")
        for percent in (0, 0, 40, 100):
            reporter.update("render", completed=percent, detail=f"in_progress {percent}%")
        reporter.done("render")
        reporter.note("callback video.archived for video_1 arrived")
        assert out.getvalue().splitlines() == [
            "[make run] rendering the demo video",
            "[make run]   in_progress 0%",
            "[make run]   in_progress 40%",
            "[make run]   in_progress 100%",
            "[make run] callback video.archived for video_1 arrived",
        ]

    def test_on_a_terminal_it_is_a_live_step_list_with_bars_and_elapsed_time(self) -> None:
        class Terminal(io.StringIO):
            def isatty(self) -> bool:
                return True

        steps = [
            Step("postgres", "Postgres", "preparing Postgres"),
            Step("render", "render", "rendering the demo video", total=100),
            Step("callback", "callback video.archived", "waiting for its callback"),
        ]
        reporter = make_reporter(steps, stream=Terminal())
        assert isinstance(reporter, RichReporter)
        try:
            reporter.begin("postgres", detail="video_gateway_main_0123abcd")
            reporter.done("postgres", "database video_gateway_main_0123abcd")
            reporter.begin("render")
            reporter.relabel("render", "rendering video_1 with sora-2", title="render video_1")
            reporter.update("render", completed=40, total=100, detail="in_progress 40%")
        finally:
            reporter.close()
        screen = Console(width=120, record=True, file=io.StringIO())
        screen.print(reporter.renderable())
        rows = screen.export_text().splitlines()
        assert re.match(r"^\S make run .*━.* \d:\d\d:\d\d 1/3 steps", rows[0]), rows[0]
        assert re.match(r"^✓ Postgres .*━+ \d:\d\d:\d\d database video_gateway_main", rows[1]), rows[1]
        assert re.match(r"^\S render video_1 .*━+╸? +\d:\d\d:\d\d in_progress 40%", rows[2]), rows[2]
        assert re.match(r"^· callback video.archived +-:--:--", rows[3]), rows[3]

    def test_the_summary_says_where_everything_is(self, tmp_path: Path) -> None:
        database = checkout_database_name(tmp_path)
        settings = stack.with_database(dev_settings(), f"postgresql+asyncpg://postgres@127.0.0.1:5432/{database}")
        receiver = CallbackReceiver(SECRET, log_path=tmp_path / "logs" / "callbacks.log")
        demo = stack.DemoResult(
            video={"id": "video_1"},
            archive={"video": {"bytes": 1234, "sha256": "ab" * 32, "state": "archived"}},
            copy=tmp_path / "video_1.mp4",
            callback=ReceivedCallback("video.archived", "video_1", "msg_1", 0.0),
        )
        lines = stack.summary(
            settings, demo, receiver=receiver, workdir=tmp_path, admin_key="vg-admin-k", database_explicit=False
        )
        text = "\n".join(lines)
        assert "s3://video-gateway/videos/video_1/video.mp4" in text
        assert f"data in {tmp_path / 'seaweedfs'}" in text
        assert (
            "callback video.archived for video_1 arrived at http://127.0.0.1:8102/callbacks, signature verified "
            "with standardwebhooks: Webhook(secret).verify(body, headers)"
        ) in text
        assert "console: http://127.0.0.1:8000/console  (sign in with the admin key vg-admin-k" in text
        assert f"database: {database} on 127.0.0.1:5432 (this checkout's own" in text
        assert "cli.env" in text and "video-gateway status" in text


# ----- stopping the stack ------------------------------------------------------------------------------

# Says it is ready once SIGTERM is ignored, then waits to be killed.
STUBBORN = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); print('ready', flush=True); time.sleep(60)"
)
STOPS_ON_TERM = "import time; print('ready', flush=True); time.sleep(60)"


def _started(name: str, code: str, logs: Path) -> ManagedProcess:
    process = ManagedProcess(name, [sys.executable, "-c", code], {}, logs / f"{name}.log").start()
    deadline = time.monotonic() + 10
    while "ready" not in process.log_tail():
        assert time.monotonic() < deadline, f"{name} never started"
        time.sleep(0.02)
    return process


class TestStopAll:
    def test_every_process_stops_and_only_the_stubborn_ones_are_killed(self, tmp_path: Path) -> None:
        polite = _started("polite", STOPS_ON_TERM, tmp_path)
        stubborn = _started("stubborn", STUBBORN, tmp_path)
        killed = stop_all([polite, stubborn], grace=1.0)
        assert killed == [stubborn]
        assert not polite.alive() and not stubborn.alive()
        assert polite.process is not None and polite.process.returncode == -signal.SIGTERM
        assert stubborn.process is not None and stubborn.process.returncode == -signal.SIGKILL

    def test_the_grace_is_shared_not_one_each(self, tmp_path: Path) -> None:
        """Three processes that ignore SIGTERM, one second's grace: one after another this took three."""
        stubborn = [_started(f"stubborn-{n}", STUBBORN, tmp_path) for n in range(3)]
        started = time.monotonic()
        assert stop_all(stubborn, grace=1.0) == stubborn
        assert time.monotonic() - started < 2.5
        assert not any(process.alive() for process in stubborn)

    def test_a_process_never_started_or_already_gone_is_skipped(self, tmp_path: Path) -> None:
        gone = ManagedProcess("gone", [sys.executable, "-c", "pass"], {}, tmp_path / "gone.log").start()
        assert gone.process is not None
        gone.process.wait(timeout=10)
        never = ManagedProcess("never", ["true"], {}, tmp_path / "never.log")
        assert stop_all([never, gone], grace=1.0) == []
        assert gone.process.returncode == 0
