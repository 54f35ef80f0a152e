"""The test suite's own layout, checked on the source: conftest modules hold fixtures, `tests/support/` holds
what tests import, and nothing imports from a conftest.

pytest loads a conftest itself, under a module name that depends on how the run starts (rootdir, `__init__.py`
files, `--import-mode`); importing one from a test module as well can load it twice, and a helper kept there is
invisible to whoever looks in `tests/support/` for it. This test parses every module under tests/ (no imports
run); if it fails, move the helper, not the rule.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TESTS = ROOT / "tests"


def imported_modules(path: Path, root: Path) -> list[tuple[int, list[str]]]:
    """(line, the modules and `module.name`s an import statement names) for every import in `path`, relative
    imports resolved against the file's package under `root`."""
    package = list(path.relative_to(root).parent.parts)
    found: list[tuple[int, list[str]]] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found.append((node.lineno, [alias.name for alias in node.names]))
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.append((node.lineno, [module, *(f"{module}.{alias.name}" for alias in node.names)]))
    return found


def conftest_imports(path: Path, root: Path = ROOT) -> list[str]:
    """`file:line` for each import in `path` that names a conftest module."""
    return [
        f"{path.relative_to(root)}:{line}"
        for line, names in imported_modules(path, root)
        if any(name == "conftest" or name.endswith(".conftest") for name in names)
    ]


def test_the_check_sees_the_whole_suite() -> None:
    paths = {path.relative_to(ROOT).as_posix() for path in TESTS.rglob("*.py")}
    assert {"tests/conftest.py", "tests/integration/conftest.py", "tests/support/factories.py"} <= paths
    assert "tests/unit/test_test_layout.py" in paths


def test_the_check_finds_every_form_of_a_conftest_import(tmp_path: Path) -> None:
    package = tmp_path / "tests" / "integration"
    package.mkdir(parents=True)
    module = package / "test_example.py"
    module.write_text(
        "from tests.integration.conftest import helper\n"
        "from .conftest import helper as again\n"
        "from . import conftest\n"
        "import tests.conftest\n"
        "from ..conftest import make_settings\n"
        "from tests.support.factories import make_video\n"
        "from tests.support import postgres\n"
        "def test_x() -> None:\n"
        "    from tests.e2e.conftest import Stack\n",
        encoding="utf-8",
    )
    lines = [int(entry.rsplit(":", 1)[1]) for entry in conftest_imports(module, tmp_path)]
    assert lines == [1, 2, 3, 4, 5, 9]


def test_no_module_imports_from_a_conftest() -> None:
    """Fixtures stay in conftest modules (pytest finds them by directory); anything a test imports lives in
    `tests/support/` (helpers by theme; rows from `tests/support/factories.py`)."""
    offenders = [entry for path in sorted(TESTS.rglob("*.py")) for entry in conftest_imports(path)]
    assert offenders == [], "these import from a conftest; move what they use to tests/support/:\n" + "\n".join(
        offenders
    )
