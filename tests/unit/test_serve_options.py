"""Defect 6: `video-gateway serve` bounds connections and times out idle and slow clients (the uvicorn options)."""

from __future__ import annotations

from typing import Any

import pytest
import uvicorn
from typer.testing import CliRunner

from app import cli as cli_module
from app.core.config import get_settings, load_settings
from app.core.server import HeadLimitedProtocol, uvicorn_options


class TestUvicornOptions:
    def test_the_limits_and_timeouts_come_from_the_api_settings(self) -> None:
        settings = load_settings(
            mode="dev",
            api={
                "limit_concurrency": 123,
                "keep_alive_timeout_seconds": 7,
                "header_timeout_seconds": 3.5,
                "max_header_bytes": 9000,
            },
        )
        options = uvicorn_options(settings)
        assert options["limit_concurrency"] == 123
        assert options["timeout_keep_alive"] == 7
        assert options["h11_max_incomplete_event_size"] == 9000
        protocol = options["http"]
        assert issubclass(protocol, HeadLimitedProtocol)
        assert protocol.head_timeout_seconds == 3.5
        assert protocol.max_head_bytes == 9000
        # What was there before stays: no proxy headers trusted, our own access log, our logging.
        assert options["proxy_headers"] is False
        assert options["access_log"] is False
        assert options["log_config"] is None
        assert (options["host"], options["port"]) == (settings.api.host, settings.api.port)

    def test_the_defaults_bound_every_connection(self) -> None:
        options = uvicorn_options(load_settings(mode="dev"))
        assert options["limit_concurrency"] == 1000
        assert options["timeout_keep_alive"] == 5
        assert options["http"].head_timeout_seconds == 10.0
        assert options["h11_max_incomplete_event_size"] == 16 * 1024

    def test_host_and_port_from_the_command_line_win(self) -> None:
        options = uvicorn_options(load_settings(mode="dev"), host="0.0.0.0", port=9999)
        assert (options["host"], options["port"]) == ("0.0.0.0", 9999)


def test_the_serve_command_passes_them_to_uvicorn(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}

    def fake_run(app: object, **options: Any) -> None:
        seen.update(options)

    monkeypatch.setattr(uvicorn, "run", fake_run)
    monkeypatch.setattr(cli_module, "configure_logging", lambda *_: None)
    monkeypatch.setenv("VG_MODE", "dev")
    monkeypatch.setenv("VG_WEBHOOKS__ENABLED", "false")
    monkeypatch.setenv("VG_API__LIMIT_CONCURRENCY", "77")
    monkeypatch.setenv("VG_API__HEADER_TIMEOUT_SECONDS", "2")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(cli_module.cli, ["serve", "--port", "8123"])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    assert seen["limit_concurrency"] == 77
    assert seen["port"] == 8123
    assert seen["http"].head_timeout_seconds == 2.0
    assert seen["timeout_keep_alive"] == 5
