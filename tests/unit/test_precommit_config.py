"""The pre-commit hooks run the same pinned tools `make test` runs first, from this checkout's .venv."""

from __future__ import annotations

import shlex
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def test_each_hook_runs_a_tool_of_the_venv_that_make_test_also_runs() -> None:
    config = yaml.safe_load((ROOT / ".pre-commit-config.yaml").read_text())
    hooks = [hook for repo in config["repos"] for hook in repo["hooks"]]
    assert {hook["id"] for hook in hooks} == {"ruff-format", "ruff-check", "mypy"}
    makefile = (ROOT / "Makefile").read_text()
    for hook in hooks:
        program, *arguments = shlex.split(hook["entry"])
        assert program.startswith(".venv/bin/") and (ROOT / program).is_file(), hook
        tool = program.removeprefix(".venv/bin/")
        assert f"$(BIN)/{tool} {' '.join(arguments[:1])}".rstrip() in makefile, hook
        assert hook["language"] == "system"  # nothing fetched: the pinned tools of the dev extras
