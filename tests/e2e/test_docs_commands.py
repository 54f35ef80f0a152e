"""Every command the docs tell an operator to type is run here, as written, or checked the only way this machine allows.

The commands come from the shell blocks of the README, `docs/*.md` and the chart's README, and from the
`video-gateway …` spans of `docs/*.md`. A command of a program this file does not know fails the test, so a new
doc command cannot go unchecked:

- `video-gateway …`: run as written against a running stack (its database, S3, simulator and API), with the
  placeholders (`VIDEO_ID`, `NAME`, `CALLER`) replaced by real values. Long-running roles (`serve`, `worker`,
  `simulator`, `dev`) are started by the e2e fixtures instead; here their command line must parse.
- `kubectl create secret …`: run as written by the real kubectl with `--dry-run=client` (there is no cluster),
  and the keys it creates must be exactly the keys the chart mounts.
- `kubectl exec deploy/NAME -- CMD`: the chart, rendered for that release, must have that Deployment, and CMD is
  run as above.
- `helm template|install|upgrade --install RELEASE CHART --set …`: rendered by Helm's own Go SDK with the same
  release and values (no helm binary here), every manifest valid for Kubernetes, every `--set` visible in them.
- `docker build -t TAG CONTEXT`: there is no Docker daemon here. The Dockerfile it builds is linted and its
  install replayed in a fresh venv by `tests/integration/packaging/test_dockerfile.py`; here the context must
  hold that Dockerfile.
- `make TARGET`: the target exists (`make -n`); `make test` and `make run` are this suite and the dev stack.
- `python -m bench …`: the benchmarks run in `make bench` / `make soak` (the suite runs them on a tiny size);
  here the documented arguments must parse with the bench's own parser.
- `[VAR=value …] .venv/bin/pytest PATHS`: those tests run in this suite anyway; here they must be collected, with
  every variable they are given one that the tests read.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.dev.processes import gateway_command
from tests.support.helm_chart import SECRET_ENV, assert_valid_for_kubernetes, by_kind, pod_specs, render
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", ROOT / "helm" / "video-gateway" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SHELL_BLOCK = re.compile(r"^```(?:sh|bash|shell)\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE_COMMAND = re.compile(r"`(video-gateway [^`]+)`")
FENCED_BLOCK = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
LONG_RUNNING = {"serve", "worker", "simulator", "dev"}
PYTEST = ".venv/bin/pytest"
VENV_GATEWAY = ".venv/bin/video-gateway"
# `.venv/bin/python docs/examples/NAME.py [ARG]`: an example script, run against the stack.
VENV_PYTHON = ".venv/bin/python"


@dataclass(frozen=True)
class DocCommand:
    source: str
    words: tuple[str, ...]  # the command line, without leading `NAME=value` assignments
    env: tuple[tuple[str, str], ...] = ()

    def __str__(self) -> str:
        return f"{self.source}: {shlex.join(self.words)}"


def _shell_commands(block: str) -> Iterator[list[str]]:
    """Commands of a shell block: continuation lines joined, comments dropped, quotes honoured."""
    pending = ""
    for line in block.splitlines():
        pending += line.rstrip("\\") + " " if line.endswith("\\") else line
        if line.endswith("\\"):
            continue
        try:
            words = shlex.split(pending, comments=True)
        except ValueError:  # an open quote: the value goes on over the next line
            pending += "\n"
            continue
        pending = ""
        if words:
            yield words


ASSIGNMENT = re.compile(r"[A-Z_][A-Z0-9_]*=")


def _command(source: str, words: list[str]) -> DocCommand:
    """`A=1 B=2 prog …` → prog … with A and B as its environment; a lone assignment stays as it is. The CLI
    as the first-hour page shows it, `.venv/bin/video-gateway`, is the same program as `video-gateway`."""
    assignments = 0
    while assignments < len(words) - 1 and ASSIGNMENT.match(words[assignments]):
        assignments += 1
    env = tuple((word.partition("=")[0], word.partition("=")[2]) for word in words[:assignments])
    command = words[assignments:]
    if command and command[0] == VENV_GATEWAY:
        command = ["video-gateway", *command[1:]]
    return DocCommand(source, tuple(command), env)


def documented_commands() -> list[DocCommand]:
    commands: list[DocCommand] = []
    for document in DOCUMENTS:
        text = document.read_text()
        source = str(document.relative_to(ROOT))
        for block in SHELL_BLOCK.findall(text):
            commands.extend(_command(source, words) for words in _shell_commands(block))
        if document.parent.name == "docs":
            # Spans in prose only: a fenced block's `video-gateway …` is output a command printed (a hint in
            # an error line), not a command to run.
            for span in INLINE_COMMAND.findall(FENCED_BLOCK.sub("", text)):
                if not any(mark in span for mark in "|[…"):  # a synopsis, not a command
                    commands.append(DocCommand(source, tuple(shlex.split(span))))
    return commands


COMMANDS = documented_commands()


def commands_of(program: str) -> list[DocCommand]:
    return [command for command in COMMANDS if command.words[0] == program]


def test_every_documented_command_is_of_a_program_this_file_checks() -> None:
    checked = {"video-gateway", "kubectl", "helm", "docker", "make", PYTEST, "python", VENV_PYTHON}
    environment_only = [c for c in COMMANDS if "=" in c.words[0] and len(c.words) == 1]  # `VAR='…'` examples
    unknown = [str(c) for c in COMMANDS if c.words[0] not in checked and c not in environment_only]
    assert not unknown, f"add a check for these documented commands: {unknown}"
    # The docs do document these; an extraction that finds none would make every test below vacuous.
    assert len(commands_of("video-gateway")) >= 8
    assert commands_of("kubectl") and commands_of("helm") and commands_of("docker")


# --- video-gateway ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def archived_video_id(stack: Stack) -> str:
    """A video rendered and archived through the stack, for the commands that take a VIDEO_ID."""
    key = stack.new_caller_key()
    with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {key}"}, timeout=30) as client:
        created = client.post("/v1/videos", json={"prompt": "docs commands", "model": "sora-2", "seconds": "4"})
        assert created.status_code == 200, created.text
        video_id: str = created.json()["id"]
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            body = client.get(f"/v1/videos/{video_id}").json()
            variants = (body.get("archive") or {}).values()
            if variants and all(variant["state"] == "archived" for variant in variants):
                return video_id
            time.sleep(0.3)
    pytest.fail(f"{video_id} was not archived in time: {body}")


def _substitute(words: tuple[str, ...], video_id: str) -> list[str]:
    values = {"VIDEO_ID": video_id, "NAME": f"docs-{uuid.uuid4().hex[:8]}", "CALLER": f"docs-{uuid.uuid4().hex[:8]}"}
    return [values.get(word, word) for word in words]


def run_gateway_command(words: tuple[str, ...], stack: Stack, video_id: str) -> subprocess.CompletedProcess[str]:
    assert words[0] == "video-gateway"
    arguments = _substitute(words[1:], video_id)
    if arguments[0] in LONG_RUNNING:
        arguments = [*arguments, "--help"]
    return subprocess.run(
        gateway_command(*arguments),
        env={**stack.env, "VG_OPS_API_URL": stack.api_url, "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.mark.parametrize("command", commands_of("video-gateway"), ids=str)
def test_documented_gateway_command_runs(command: DocCommand, stack: Stack, archived_video_id: str) -> None:
    words, redirect = command.words, None
    if ">" in words:  # `… > FILE`: what it prints must be what FILE holds, or running it would change the repo
        words, redirect = words[: words.index(">")], ROOT / words[words.index(">") + 1]
    result = run_gateway_command(words, stack, archived_video_id)
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    if redirect is not None:
        assert result.stdout == redirect.read_text(), f"{redirect} is stale: run `{shlex.join(command.words)}`"


def test_the_rejected_webhooks_command_shows_a_rejection_the_api_counted(stack: Stack, archived_video_id: str) -> None:
    (command,) = [c for c in commands_of("video-gateway") if c.words[1:4] == ("webhooks", "list", "--rejected")]
    refused = httpx.post(
        f"{stack.api_url}/webhooks/openai",
        content=b"{}",
        headers={
            "content-type": "application/json",
            "webhook-id": "msg_docs",
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": "v1," + base64.b64encode(bytes(32)).decode(),  # well formed, wrong
        },
    )
    assert refused.status_code in {400, 401}
    result = run_gateway_command(command.words, stack, archived_video_id)
    assert result.returncode == 0, result.stderr
    assert re.search(r"signature\S*\s+│\s+[1-9]\d*\s+│", result.stdout), result.stdout


def test_the_replay_command_queues_the_documented_video_again(stack: Stack, archived_video_id: str) -> None:
    command = next(c for c in commands_of("video-gateway") if c.words[1] == "replay")
    result = run_gateway_command(command.words, stack, archived_video_id)
    assert result.returncode == 0, result.stderr
    assert archived_video_id in result.stdout


@pytest.mark.parametrize("command", commands_of(VENV_PYTHON), ids=str)
def test_documented_example_script_runs_against_the_stack(command: DocCommand, stack: Stack, tmp_path: Path) -> None:
    """The example scripts (the SDK render, the signed callback) run as written, aimed at the stack by the same
    variables a reader would set, and succeed; what they print is what the docs show."""
    script = ROOT / command.words[1]
    assert script.parent == ROOT / "docs" / "examples" and script.is_file(), command
    env = {
        **stack.env,
        "OPENAI_BASE_URL": f"{stack.api_url}/v1",
        "OPENAI_API_KEY": stack.new_caller_key(),
        **dict(command.env),
    }
    result = subprocess.run(
        [str(ROOT / VENV_PYTHON), str(script), *command.words[2:]],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
    )
    assert result.returncode == 0, f"{command}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.stderr
    if script.name == "callback.py":
        assert re.search(r"video\.archived for video_\w+: signature verified", result.stdout), result.stdout
    if script.name == "first_render.py":
        assert re.search(r"saved \S+ \((\d+) bytes\)", result.stdout), result.stdout


# --- kubectl and helm ----------------------------------------------------------------------------------------


def _release_manifests(release: str, values: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    manifests = render(values, release=release)
    assert_valid_for_kubernetes(manifests)
    return manifests


def _mounted_secret_keys(manifests: list[dict[str, Any]]) -> set[str]:
    keys: set[str] = set()
    for _, spec in pod_specs(manifests):
        volume = next(v for v in spec["volumes"] if v["name"] == "secrets")
        for source in volume["projected"]["sources"]:
            keys.update(item["key"] for item in source["secret"]["items"])
    return keys


@pytest.mark.parametrize(
    "command", [c for c in commands_of("kubectl") if c.words[1:3] == ("create", "secret")], ids=str
)
def test_documented_secret_holds_exactly_the_keys_the_chart_mounts(command: DocCommand) -> None:
    result = subprocess.run(
        [*command.words, "--dry-run=client", "-o", "json"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    secret = json.loads(result.stdout)
    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "video-gateway"  # the chart's default `secrets.existingSecret`
    assert set(secret["data"]) == _mounted_secret_keys(render())
    assert all(base64.b64decode(value) for value in secret["data"].values())
    assert len(SECRET_ENV) == len(secret["data"])  # one key per *_FILE setting the chart sets


def _helm_values(words: tuple[str, ...]) -> tuple[str, dict[str, Any], list[tuple[str, str]]]:
    """Release name, values and `--set` pairs of a `helm template|install|upgrade --install` command line."""
    arguments = list(words[1 : words.index(">")] if ">" in words else words[1:])  # the output file is the reader's
    verb = arguments.pop(0)
    if verb == "upgrade":
        assert "--install" in arguments
        arguments.remove("--install")
    assert verb in {"template", "install", "upgrade"}, words
    positional: list[str] = []
    values: dict[str, Any] = {}
    sets: list[tuple[str, str]] = []
    while arguments:
        word = arguments.pop(0)
        if word == "--set":
            path, _, value = arguments.pop(0).partition("=")
            sets.append((path, value))
            *parents, leaf = path.split(".")
            node = values
            for parent in parents:
                node = node.setdefault(parent, {})
            node[leaf] = value
        elif word == "-f":
            arguments.pop(0)  # the reader's own values file; the chart's defaults stand in for it
        elif word.startswith("-"):
            pytest.fail(f"an option this test does not know: {word} in {shlex.join(words)}")
        else:
            positional.append(word)
    release, chart = positional
    assert (ROOT / chart / "Chart.yaml").is_file(), chart
    return release, values, sets


@pytest.mark.parametrize("command", commands_of("helm"), ids=str)
def test_documented_helm_command_renders_valid_manifests_with_its_values(command: DocCommand) -> None:
    release, values, sets = _helm_values(command.words)
    manifests = _release_manifests(release, values)
    text = json.dumps(manifests)
    for path, value in sets:
        assert value in text, f"--set {path}={value} is not in the rendered manifests"
    assert by_kind(manifests, "Deployment")


@pytest.mark.parametrize("command", [c for c in commands_of("kubectl") if c.words[1] == "exec"], ids=str)
def test_documented_exec_targets_a_deployment_of_the_chart_and_its_command_runs(
    command: DocCommand, stack: Stack, archived_video_id: str
) -> None:
    separator = command.words.index("--")
    target = command.words[2]
    kind, _, name = target.partition("/")
    assert kind == "deploy"
    (install,) = [c for c in commands_of("helm") if c.words[1] in {"install", "upgrade"} and c.source == command.source]
    release, values, _ = _helm_values(install.words)
    deployments = by_kind(_release_manifests(release, values), "Deployment")
    assert name in deployments, f"{name} is not among {sorted(deployments)}"
    result = run_gateway_command(command.words[separator + 1 :], stack, archived_video_id)
    assert result.returncode == 0, result.stderr


# --- docker and make -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("command", commands_of("docker"), ids=str)
def test_documented_docker_build_uses_the_linted_and_replayed_dockerfile(command: DocCommand) -> None:
    words = list(command.words)
    assert words[1] == "build", "only `docker build` is documented; there is no daemon here to run anything else"
    tag = words[words.index("-t") + 1]
    assert re.fullmatch(r"[a-z0-9.\-/:]+", tag), tag
    context = ROOT / words[-1]
    assert (context / "Dockerfile").is_file()
    assert (ROOT / "tests" / "integration" / "packaging" / "test_dockerfile.py").is_file()


@pytest.mark.parametrize("command", commands_of("make"), ids=str)
def test_documented_make_target_exists(command: DocCommand) -> None:
    result = subprocess.run(["make", "-n", *command.words[1:]], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("command", commands_of(PYTEST), ids=str)
def test_documented_pytest_command_collects_tests_that_read_its_variables(command: DocCommand) -> None:
    paths = [word for word in command.words[1:] if not word.startswith("-")]
    result = subprocess.run(
        [str(ROOT / PYTEST), "--collect-only", "-q", "-p", "no:cacheprovider", *paths],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(r"^\S+::\S+", result.stdout, re.MULTILINE), result.stdout + result.stderr
    sources = "".join((ROOT / path).read_text() for path in paths if (ROOT / path).is_file())
    for name, _ in command.env:
        assert name in sources, f"{name} is not read by {paths}"


@pytest.mark.parametrize("command", commands_of("python"), ids=str)
def test_documented_bench_command_parses(command: DocCommand) -> None:
    assert command.words[1:3] == ("-m", "bench"), "only `python -m bench …` is documented"
    from bench.__main__ import build_parser

    arguments = build_parser().parse_args(list(command.words[3:]))  # exits (SystemExit 2) on a bad argument
    assert arguments.command in {"run", "soak", "report"}
