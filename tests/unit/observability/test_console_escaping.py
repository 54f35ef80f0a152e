"""The dev (console) log format escapes control characters from requests: a path cannot forge a log line,
move the cursor or colour the terminal. The JSON format escapes them already and stays as it is."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Route

from app.core.access_log import AccessLog
from app.core.logging import build_formatter

# A newline and a forged line, an ANSI colour escape, a carriage return, a NUL and a DEL.
HOSTILE = "/v1/videos/x\n2026-01-01T00:00:00Z [info ] forged line\x1b[31mred\r\x00\x7f"


@contextmanager
def captured(log_format: str, logger: str = "") -> Iterator[io.StringIO]:
    """The records of `logger` (default: all) as `log_format` writes them."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(build_formatter(log_format))
    root = logging.getLogger(logger)
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(previous)


def assert_one_clean_line(text: str) -> None:
    assert text.endswith("\n")
    assert "\n" not in text[:-1], text
    for raw in ("\x1b", "\r", "\x00", "\x7f"):
        assert raw not in text, repr(text)


class TestConsoleFormat:
    def test_a_message_argument_with_control_characters_stays_on_one_escaped_line(self) -> None:
        with captured("console") as stream:
            logging.getLogger("app.test").info("GET %s 404", HOSTILE, extra={"path": HOSTILE})
        text = stream.getvalue()
        assert_one_clean_line(text)
        assert "\\n2026-01-01" in text and "\\x1b[31m" in text and "\\x00" in text

    def test_tracebacks_keep_their_lines_but_not_escape_codes(self) -> None:
        with captured("console") as stream:
            try:
                raise ValueError("bad path \x1b[2J")
            except ValueError:
                logging.getLogger("app.test").exception("failed")
        text = stream.getvalue()
        assert "Traceback" in text and "\x1b" not in text and "\\x1b[2J" in text

    async def test_the_access_line_of_a_hostile_path_is_one_escaped_line(self) -> None:
        async def hello(_: object) -> PlainTextResponse:
            return PlainTextResponse("ok")

        app = AccessLog(Starlette(routes=[Route("/", hello)]))
        with captured("console", "app.access") as stream:
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                await client.get("/v1/videos/x%0A2026-01-01T00:00:00Z%20forged%1B%5B31m%00%0D")
        text = stream.getvalue()
        assert_one_clean_line(text)
        assert "GET /v1/videos/x\\n2026-01-01T00:00:00Z forged\\x1b[31m\\x00\\r 404" in text


class TestJsonFormat:
    def test_json_lines_still_escape_and_keep_the_text(self) -> None:
        with captured("json") as stream:
            logging.getLogger("app.test").info("GET %s 404", HOSTILE)
        text = stream.getvalue()
        assert_one_clean_line(text)
        assert json.loads(text)["event"] == f"GET {HOSTILE} 404"
