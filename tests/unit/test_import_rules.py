"""The layering of `app/`, checked on the source: routes → services → repositories and clients.

Prose rules drift; this test is the rule. It parses every module's imports (no import side effects).
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

APP = Path(__file__).resolve().parents[2] / "app"


def module_name(path: Path) -> str:
    parts = path.relative_to(APP.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports_of(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def runtime_imports_of(path: Path) -> set[str]:
    """As `imports_of`, without the imports under `if TYPE_CHECKING:` (annotations only, never executed)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            node.body = []
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


MODULES = {module_name(path): imports_of(path) for path in sorted(APP.rglob("*.py"))}


def importers_of(prefix: str) -> set[str]:
    return {
        name
        for name, imported in MODULES.items()
        if not name.startswith(prefix) and any(i == prefix or i.startswith(prefix + ".") for i in imported)
    }


def test_the_rules_see_the_whole_app() -> None:
    assert {"app.main", "app.videos.routes", "app.videos.service", "app.upstream.client"} <= set(MODULES)


def test_only_the_app_factory_imports_routes() -> None:
    for name, imported in MODULES.items():
        routes = {i for i in imported if i.endswith(".routes") or ".routes." in i}
        if routes:
            assert name == "app.main", f"{name} imports {routes}"


def test_simulator_takes_nothing_from_our_domains() -> None:
    for name, imported in MODULES.items():
        if name.startswith("app.simulator"):
            ours = {i for i in imported if i.startswith("app.") and not i.startswith("app.simulator")}
            assert ours <= {"app.core", "app.core.config", "app.core.config.SimulatorSettings"}, (name, ours)


def test_only_the_cli_starts_the_simulator() -> None:
    assert importers_of("app.simulator") <= {"app.cli"}


@pytest.mark.parametrize("layer", ["service", "repository", "client", "schemas", "inputs"])
def test_lower_layers_never_import_routes_or_the_app(layer: str) -> None:
    for name, imported in MODULES.items():
        if name.endswith("." + layer):
            assert not any(i.startswith("app.main") or ".routes" in i for i in imported), name


def test_repositories_do_not_import_services() -> None:
    for name, imported in MODULES.items():
        if name.endswith(".repository"):
            assert not any(i.endswith(".service") or ".service." in i for i in imported), name


def test_queries_live_in_repositories() -> None:
    """Routes and services build no SQL: `select`/`update`/`delete`/`insert` come from sqlalchemy only there."""
    builders = {f"sqlalchemy.{verb}" for verb in ("select", "update", "delete", "insert", "text")}
    for name, imported in MODULES.items():
        if name.endswith((".routes", ".service")):
            assert not (imported & builders), (name, imported & builders)


def test_http_clients_stay_in_the_outbound_packages() -> None:
    """Only the upstream package and the callback sender speak HTTP (simulator, dev and operator tools apart)."""
    outbound = ("app.upstream.", "app.callbacks.", "app.simulator", "app.dev.", "app.ops.")
    users = {name for name, imported in MODULES.items() if "httpx" in imported and not name.startswith(outbound)}
    assert users <= {"app.main"}, users


def test_core_imports_no_domain_at_run_time() -> None:
    """`app.core` is the bottom layer: its modules run with nothing of the domains (types for checking aside)."""
    for path in sorted((APP / "core").rglob("*.py")):
        ours = {i for i in runtime_imports_of(path) if i.startswith("app.") or i == "app"}
        assert all(i.startswith("app.core") for i in ours), (module_name(path), ours)


def test_only_routes_take_the_dependency_aliases() -> None:
    """`app.deps` is the routes' one module of `Annotated` dependencies; nothing below the routes imports it."""
    importers = importers_of("app.deps")
    assert importers, "the routes import their dependencies from app.deps"
    assert all(name.endswith(".routes") for name in importers), importers


def test_app_state_is_touched_only_by_the_resources_module() -> None:
    """The API's resources are one typed `AppResources`, read through `app.core.resources` (the simulator is
    an app of its own)."""
    readers = {
        module_name(path)
        for path in APP.rglob("*.py")
        if re.search(r"\bapp\.state\b", path.read_text(encoding="utf-8"))
    }
    assert {name for name in readers if not name.startswith("app.simulator")} <= {"app.core.resources"}, readers


def test_one_bearer_parser_and_one_admin_key_check() -> None:
    """`app.auth.keys` reads `Authorization: Bearer` and compares the admin key; nothing else of the gateway does
    (the simulator stands for other services)."""
    for path in APP.rglob("*.py"):
        name = module_name(path)
        if name == "app.auth.keys" or name.startswith("app.simulator"):
            continue
        source = path.read_text(encoding="utf-8").lower()
        assert '"bearer"' not in source, f"{name} parses a bearer header: use app.auth.keys.parse_bearer"
        assert "admin_api_key.get_secret_value" not in source, f"{name} reads the admin key: use app.auth.keys"
