"""The layering of `app/`, checked on the source: routes → services → repositories and clients.

Prose rules drift; this test is the rule. It parses every module's imports (no import side effects). The
repository rules (decision 008): each table's model has one owning repository, the only module that queries it;
repositories import nothing but `app.core`, `app.models`, SQLAlchemy and each other; the domains, seen through
their other imports, form no cycle; and every advisory lock is one named function.
"""

from __future__ import annotations

import ast
import itertools
import re
import sys
from collections.abc import Iterator
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


def test_transactions_are_opened_so_a_dead_connection_can_be_retried() -> None:
    """`Database.transaction()` (or a request's session), never `sessionmaker.begin()`: only a transaction its
    first statement begins lets that statement run again after a disconnect (app/core/db.py)."""
    openers = {
        module_name(path)
        for path in APP.rglob("*.py")
        if re.search(r"^[^#\n]*\bsessionmaker\.begin\(\)(?! *[,`])", path.read_text(encoding="utf-8"), re.M)
    }
    assert openers == set(), openers


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


@pytest.mark.parametrize(
    ("lower", "upper"),
    [
        # Limits are set on auth's callers and keys; the two meet in app/deps.py (authenticate, then rate-check).
        ("app.auth", "app.limits"),
        # Callbacks tell callers what upstream did; the outbound URL guard both use is app/core/outbound_urls.py.
        ("app.upstream", "app.callbacks"),
    ],
)
def test_a_domain_imports_nothing_of_the_domain_built_on_it(lower: str, upper: str) -> None:
    for name, imported in MODULES.items():
        if name == lower or name.startswith(lower + "."):
            offending = {i for i in imported if i == upper or i.startswith(upper + ".")}
            assert not offending, f"{name} imports {offending}: {upper} depends on {lower}, not the reverse"


# ----- repositories: the shared data layer (docs/decisions/008-repositories-are-the-shared-layer.md) ----------


def tree_of(name: str) -> ast.Module:
    path = APP.parent / Path(*name.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    return ast.parse(path.read_text(encoding="utf-8"))


TREES = {name: tree_of(name) for name in MODULES}


def is_repository(name: str) -> bool:
    return name.endswith(".repository")


def test_repositories_import_only_core_models_sqlalchemy_and_other_repositories() -> None:
    """A `*.repository` module imports the standard library, `sqlalchemy…`, `app.core…`, `app.models…` and
    `app.<domain>.repository…`, nothing else (no service, route, client, schema or other module of a domain):
    so any domain may import any repository without taking on its domain's behaviour."""
    for name, imported in MODULES.items():
        if not is_repository(name):
            continue
        for module in imported:
            top, *rest = module.split(".")
            if top == "app":
                allowed = rest[:1] in (["core"], ["models"]) or (len(rest) >= 2 and rest[1] == "repository")
            else:
                allowed = top in sys.stdlib_module_names or top in ("__future__", "sqlalchemy")
            assert allowed, f"{name} imports {module}: a repository imports only core, models, sqlalchemy, repositories"


SQL_BUILDERS = frozenset({"select", "update", "delete", "insert", "text"})
# Modules that may build SQL although they are neither a repository nor the queue, each for a reason:
SQL_BUILDERS_ALLOWED = (
    # The tables themselves (a package prefix): `text` for server defaults and partial indexes' predicates.
    "app.models.",
    # `SELECT 1`, the connection check of `Database.ping` (/readyz, the CLI's errors).
    "app.core.db",
    # The request id as a transaction-local setting (`set_config`, decision 005): on every session, no table.
    "app.core.logging",
    # /readyz's migration check reads `alembic_version`, Alembic's table, not one of our models.
    "app.readiness",
)
# (Migrations, outside app/, run their own DDL and data fixes with Alembic's `op`.)


def sql_builders_of(tree: ast.Module) -> set[str]:
    """The SQL statement builders a module imports (`from sqlalchemy… import select`) or reaches through an
    imported SQLAlchemy module (`import sqlalchemy as sa` … `sa.select`)."""
    found: set[str] = set()
    aliases: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy":
            found.update(f"{node.module}.{alias.name}" for alias in node.names if alias.name in SQL_BUILDERS)
        elif isinstance(node, ast.Import):
            aliases.update(
                (alias.asname or alias.name).split(".")[0]
                for alias in node.names
                if alias.name.split(".")[0] == "sqlalchemy"
            )
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in SQL_BUILDERS:
            root = node.value
            while isinstance(root, ast.Attribute):
                root = root.value
            if isinstance(root, ast.Name) and root.id in aliases:
                found.add(ast.unparse(node))
    return found


def test_sql_is_built_only_in_repositories_and_the_queue() -> None:
    """`select`/`update`/`delete`/`insert`/`text` (and the PostgreSQL `insert`) are used by `*.repository`
    modules and `app.archive.queue` (the job queue's named SQL) only, and by the short list above."""
    for name, tree in TREES.items():
        if is_repository(name) or name == "app.archive.queue":
            continue
        if any(
            name == allowed or (allowed.endswith(".") and name.startswith(allowed)) for allowed in SQL_BUILDERS_ALLOWED
        ):
            continue
        builders = sql_builders_of(tree)
        assert not builders, f"{name} builds SQL ({sorted(builders)}): move the query into its model's repository"


# The one module that queries each model: its repository (the job queue for `archive_jobs`, in named SQL).
OWNERS = {
    "Video": "app.videos.repository",
    "Asset": "app.archive.repository",
    "VideoInput": "app.archive.repository",
    "WebhookEvent": "app.webhooks.repository",
    "CallbackSecret": "app.callbacks.repository",
    "CallbackEndpoint": "app.callbacks.repository",
    "CallbackDelivery": "app.callbacks.repository",
    "CallbackAttempt": "app.callbacks.repository",
    "Caller": "app.auth.repository",
    "ApiKey": "app.auth.repository",
    "KeyRequestWindow": "app.limits.repository",
    "Character": "app.characters.repository",
    "IdempotencyRecord": "app.idempotency.repository",
    "ArchiveJob": "app.archive.queue",
}


def model_classes() -> set[str]:
    """The classes `app.models` exports that are tables (subclasses of `Base` in `app/models/*.py`)."""
    exported = {
        alias.asname or alias.name
        for node in TREES["app.models"].body
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    tables = {
        node.name
        for name, tree in TREES.items()
        if name.startswith("app.models.")
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        and any(isinstance(base, ast.Name) and base.id == "Base" for base in node.bases)
    }
    return exported & tables


def test_every_model_has_one_owner() -> None:
    assert set(OWNERS) == model_classes(), "a new table needs its owning repository in OWNERS (and only one)"
    assert all(owner in MODULES for owner in OWNERS.values())


QUERY_VERBS = frozenset({"select", "update", "delete", "insert"})


def first_model(arguments: list[ast.expr], models: set[str]) -> str | None:
    """The first argument that names a model: `Video`, or a column of one, `Video.id`."""
    for argument in arguments:
        if isinstance(argument, ast.Name) and argument.id in models:
            return argument.id
        if isinstance(argument, ast.Attribute) and isinstance(argument.value, ast.Name) and argument.value.id in models:
            return argument.value.id
    return None


def queried_models(tree: ast.Module, models: set[str]) -> Iterator[tuple[int, str, str]]:
    """(line, statement, model) for each `select`/`update`/`delete`/`insert` of a model (its first model
    argument; for `select(func.count()).select_from(Video)`, the `select_from`'s) and each `session.get(Model…)`."""
    builders = {
        alias.asname or alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "sqlalchemy"
        for alias in node.names
        if alias.name in QUERY_VERBS
    }
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func
        if isinstance(function, ast.Name) and function.id in builders:
            model = first_model(node.args, models)
            if model is not None:
                yield node.lineno, function.id, model
        elif isinstance(function, ast.Attribute) and function.attr == "get" and node.args:
            if (model := first_model(node.args[:1], models)) is not None:
                yield node.lineno, "get", model
        elif isinstance(function, ast.Attribute) and function.attr == "select_from":
            inner = function.value
            while isinstance(inner, ast.Call) and isinstance(inner.func, ast.Attribute):
                inner = inner.func.value  # select(...).where(...).select_from(...)
            if (
                isinstance(inner, ast.Call)
                and isinstance(inner.func, ast.Name)
                and inner.func.id in builders
                and first_model(inner.args, models) is None
                and (model := first_model(node.args, models)) is not None
            ):
                yield node.lineno, "select_from", model


def test_each_model_is_queried_only_by_its_owner() -> None:
    """A statement belongs to the owner of the first model it selects, updates, deletes or inserts, whatever it
    joins or filters on; every other domain calls that repository."""
    models = set(OWNERS)
    misplaced = [
        f"{name}:{line} {verb}({model}) belongs in {OWNERS[model]}"
        for name, tree in TREES.items()
        for line, verb, model in queried_models(tree, models)
        if name != OWNERS[model]
    ]
    assert not misplaced, "\n".join(misplaced)


# The named SQL of queries.sql is the queue's: it reads and writes `archive_jobs`. A block that names another table
# is one of these, each for a reason (and the table's owner is then not its only querier):
QUEUE_SQL_OTHER_TABLES = {
    # Decision 009: the webhook receiver's one statement finds the video, records the delivery and queues its sync
    # job; the job insert must be the queue's, so the statement is. Its `webhook_events` half mirrors
    # `WebhookRepository.record`.
    "record_video_event": {"videos", "webhook_events"},
    # A download's start (decision 012): the lease proved and extended, and the asset marked downloading, in one
    # statement; its `assets` half mirrors `ArchiveRepository.set_unless_archived`.
    "start_download": {"assets"},
    # The pruner's batches, run by the queue on the pruner's connection (one lock, one pass over every table).
    "prune_webhook_events": {"webhook_events"},
    "prune_callback_attempts": {"callback_attempts", "callback_deliveries"},
}
SQL_TABLE = re.compile(r"\b(?:FROM|JOIN|INTO|UPDATE)\s+([a-z_]+)", re.IGNORECASE)


def test_the_queue_sql_names_other_tables_only_where_listed() -> None:
    tables = {
        node.value.value
        for name, tree in TREES.items()
        if name.startswith("app.models.")
        for node in tree.body
        if isinstance(node, ast.ClassDef)
        for node in node.body
        if isinstance(node, ast.Assign)
        and any(isinstance(target, ast.Name) and target.id == "__tablename__" for target in node.targets)
        and isinstance(node.value, ast.Constant)
    }
    assert {"archive_jobs", "webhook_events", "videos"} <= tables
    source = (APP / "archive" / "queries.sql").read_text(encoding="utf-8")
    named = {}
    for block in SQL_BLOCK.finditer(source):
        sql = "\n".join(line.split("--", 1)[0] for line in block["body"].splitlines())
        named[block["name"]] = {table for table in SQL_TABLE.findall(sql) if table in tables} - {"archive_jobs"}
    assert {name: found for name, found in named.items() if found} == QUEUE_SQL_OTHER_TABLES


def test_the_ownership_rule_sees_queries() -> None:
    """The rule above would fail if it saw nothing: it does see the owners' own queries."""
    seen = {model for name, tree in TREES.items() for _, _, model in queried_models(tree, set(OWNERS))}
    assert {"Video", "Asset", "WebhookEvent", "CallbackDelivery", "Caller", "KeyRequestWindow"} <= seen


# ----- the domain graph ---------------------------------------------------------------------------

NOT_DOMAINS = frozenset({"core", "models", "simulator"})
DOMAINS = sorted(
    path.name
    for path in APP.iterdir()
    if path.is_dir() and (path / "__init__.py").exists() and path.name not in NOT_DOMAINS
)


def domain_edges() -> dict[tuple[str, str], set[str]]:
    """(importer domain, imported domain) → the imports that make the edge, as "module imports target".

    Every import counts (those only for type checking and those inside functions too: a dependency is one),
    except of a repository module (the shared data layer), of `app.core`, `app.models` and `app.deps`."""
    edges: dict[tuple[str, str], set[str]] = {}
    for name, imported in MODULES.items():
        parts = name.split(".")
        if len(parts) < 2 or parts[1] not in DOMAINS:
            continue
        for module in imported:
            target = module.split(".")
            if target[0] != "app" or len(target) < 2 or target[1] not in DOMAINS or target[1] == parts[1]:
                continue
            if len(target) >= 3 and target[2] == "repository":
                continue
            edges.setdefault((parts[1], target[1]), set()).add(f"{name} imports {module}")
    return edges


def domain_cycles(edges: dict[tuple[str, str], set[str]]) -> list[list[str]]:
    """One cycle through each strongly connected group of domains (Tarjan), as [a, b, …, a]."""
    graph: dict[str, set[str]] = {domain: set() for domain in DOMAINS}
    for source, target in edges:
        graph[source].add(target)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for successor in sorted(graph[node]):
            if successor not in index:
                visit(successor)
                low[node] = min(low[node], low[successor])
            elif successor in stack:
                low[node] = min(low[node], index[successor])
        if low[node] == index[node]:
            group = set()
            while (member := stack.pop()) != node:
                group.add(member)
            group.add(node)
            if len(group) > 1:
                groups.append(group)

    for domain in DOMAINS:
        if domain not in index:
            visit(domain)
    cycles = []
    for group in groups:
        start = min(group)
        # The shortest way back to `start` inside the group (breadth first).
        paths = {start: [start]}
        frontier = [start]
        cycle: list[str] | None = None
        while frontier and cycle is None:
            following = []
            for node in frontier:
                for successor in sorted(graph[node] & group):
                    if successor == start:
                        cycle = [*paths[node], start]
                        break
                    if successor not in paths:
                        paths[successor] = [*paths[node], successor]
                        following.append(successor)
                if cycle:
                    break
            frontier = following
        assert cycle is not None
        cycles.append(cycle)
    return cycles


def test_the_domain_graph_sees_the_domains() -> None:
    assert {"videos", "archive", "webhooks", "callbacks", "limits", "auth", "upstream"} <= set(DOMAINS)
    assert ("videos", "upstream") in domain_edges()


def test_domains_form_no_cycle() -> None:
    """The domains, linked by what they import other than repositories, are a DAG: a service never reaches back
    into a domain that depends on it. A cycle is printed with the imports that make each of its steps."""
    edges = domain_edges()
    report = []
    for cycle in domain_cycles(edges):
        report.append(" → ".join(cycle))
        for source, target in itertools.pairwise(cycle):
            report.extend(f"    {how}" for how in sorted(edges[(source, target)]))
    assert not report, "domain cycles:\n" + "\n".join(report)


# ----- advisory locks -----------------------------------------------------------------------------

ADVISORY = re.compile(r"pg_(?:try_)?advisory_(?:xact_)?lock(?:_shared)?\b")
SQL_BLOCK = re.compile(r"^-- name: (?P<name>[a-z_]+)\n(?P<body>.*?)(?=^-- name: |\Z)", re.DOTALL | re.MULTILINE)


def functions_of(tree: ast.Module) -> Iterator[ast.FunctionDef | ast.AsyncFunctionDef]:
    return (node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def takes_advisory_lock(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    for node in ast.walk(function):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and ADVISORY.search(node.value):
            return True
        if isinstance(node, ast.Attribute) and ADVISORY.fullmatch(node.attr):
            return True
    return False


def key_prefixes(function: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """The literal starts of the f-strings in a function: an advisory lock's key is `f"<purpose>:{id}"`."""
    return {
        node.values[0].value
        for node in ast.walk(function)
        if isinstance(node, ast.JoinedStr)
        and node.values
        and isinstance(node.values[0], ast.Constant)
        and isinstance(node.values[0].value, str)
    }


def python_locks() -> dict[str, list[str]]:
    """Key prefix → the functions (module.function) that take an advisory lock with it."""
    found: dict[str, list[str]] = {}
    for name, tree in TREES.items():
        for function in functions_of(tree):
            if takes_advisory_lock(function):
                where = f"{name}.{function.name}"
                prefixes = key_prefixes(function)
                assert is_repository(name), f"{where} takes an advisory lock: only a repository's lock_* function may"
                assert function.name.startswith("lock_"), f"{where}: an advisory lock is a named lock_* function"
                assert len(prefixes) == 1, f"{where}: one lock, one key f'<purpose>:{{id}}' (found {prefixes})"
                found.setdefault(prefixes.pop(), []).append(where)
    return found


def test_every_advisory_lock_is_one_named_function() -> None:
    """One advisory lock per purpose: each is taken by one `lock_*` function of a repository, whose key no other
    function uses (so two purposes never share a key, nor one purpose two keys by accident)."""
    locks = python_locks()
    assert locks, "the rule sees the locks"
    for prefix, functions in locks.items():
        assert len(functions) == 1, f"the lock key {prefix!r} is taken by {functions}"
        others = [
            other for other in locks if other != prefix and (other.startswith(prefix) or prefix.startswith(other))
        ]
        assert not others, f"the lock keys {prefix!r} and {others} overlap"
        mentions = sorted(
            {
                f"{name}.{function.name}"
                for name, tree in TREES.items()
                for function in functions_of(tree)
                if any(
                    isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(prefix)
                    for node in ast.walk(function)
                )
            }
        )
        assert mentions == functions, f"the lock key {prefix!r} appears in {mentions}"


def test_the_queue_sql_takes_each_advisory_lock_in_one_block() -> None:
    """In queries.sql, each advisory lock key is taken by one named block (its unlock may name it too)."""
    source = (APP / "archive" / "queries.sql").read_text(encoding="utf-8")
    acquired: dict[str, list[str]] = {}
    for block in SQL_BLOCK.finditer(source):
        for call in ADVISORY.finditer(block["body"]):
            literal = re.search(r"'([^']+)'", block["body"][call.end() :])
            assert literal is not None, f"{block['name']}: an advisory lock with a literal key"
            acquired.setdefault(literal[1], []).append(block["name"])
    assert acquired, "the rule sees the pruner's lock"
    for key, blocks in acquired.items():
        assert len(blocks) == 1, f"the lock key {key!r} is taken by blocks {blocks}"
    python_keys = set(python_locks())
    shared = {key for key in acquired if any(key.startswith(other) or other.startswith(key) for other in python_keys)}
    assert not shared, f"the SQL lock keys {shared} overlap the repositories' locks"
