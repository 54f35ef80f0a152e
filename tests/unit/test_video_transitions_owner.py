"""One owner for a video's status changes, checked on the source (no import side effects).

After its create, a video's `status` and error are written by its model's rules (`Video.advance`, `Video.fail` in
app/models/video.py) and nothing else, and those are called only by `app.archive.lifecycle`, which queues the
callback each transition owes. A writer elsewhere would change a status without telling the caller, or tell it
twice. The simulator and the dev tools stand for other services and are not checked.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

APP = Path(__file__).resolve().parents[2] / "app"
NOT_OURS = ("simulator", "dev")

MODEL = APP / "models" / "video.py"
LIFECYCLE = APP / "archive" / "lifecycle.py"

# A video's fields that only its model's rules write.
GUARDED_FIELDS = frozenset({"status", "error_code", "error_message"})
TRANSITIONS = frozenset({"advance", "fail"})
# How a module names the lifecycle it imports (`from app.archive import lifecycle`, or in full).
LIFECYCLE_MODULE_NAMES = frozenset({"lifecycle", "app.archive.lifecycle"})

# Assignments to these fields on objects that are not videos, as (module path under app/, source of the target).
# None today; an entry needs a comment saying what the object is.
NOT_A_VIDEO: frozenset[tuple[str, str]] = frozenset()
# Calls of `.advance(` / `.fail(` on objects that are not videos, as (module path under app/, source of the callee).
NOT_A_VIDEO_CALL: frozenset[tuple[str, str]] = frozenset()


def modules() -> Iterator[tuple[str, ast.Module]]:
    for path in sorted(APP.rglob("*.py")):
        relative = path.relative_to(APP)
        if relative.parts[0] in NOT_OURS:
            continue
        yield relative.as_posix(), ast.parse(path.read_text(encoding="utf-8"))


def assigned_attributes(tree: ast.AST) -> Iterator[ast.Attribute]:
    """Every `<x>.<field> = / += / : T =` target (inside tuples too), and `setattr(x, "<field>", ...)` as one."""
    for node in ast.walk(tree):
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = list(node.targets)
        elif isinstance(node, ast.AugAssign | ast.AnnAssign):
            targets = [node.target]
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "setattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            yield ast.Attribute(value=node.args[0], attr=node.args[1].value, ctx=ast.Store())
            continue
        while targets:
            target = targets.pop()
            if isinstance(target, ast.Tuple | ast.List):
                targets.extend(target.elts)
            elif isinstance(target, ast.Starred):
                targets.append(target.value)
            elif isinstance(target, ast.Attribute):
                yield target


def is_self(node: ast.expr) -> bool:
    return isinstance(node, ast.Name) and node.id == "self"


def test_only_the_model_writes_a_videos_status_and_error() -> None:
    writers = [
        f"{path}:{getattr(target, 'lineno', '?')} assigns {ast.unparse(target)}"
        for path, tree in modules()
        if path != MODEL.relative_to(APP).as_posix()
        for target in assigned_attributes(tree)
        if target.attr in GUARDED_FIELDS
        # `self.status` of another class (an exception's HTTP status) is not a video's.
        and not is_self(target.value)
        and (path, ast.unparse(target.value)) not in NOT_A_VIDEO
    ]
    assert writers == [], "change a video's status through app.archive.lifecycle:\n" + "\n".join(writers)


def test_only_the_lifecycle_calls_the_transitions() -> None:
    callers = [
        f"{path}:{node.lineno} calls {ast.unparse(node.func)}"
        for path, tree in modules()
        if path != LIFECYCLE.relative_to(APP).as_posix()
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in TRANSITIONS
        and not is_self(node.func.value)
        # `lifecycle.fail(...)`: the API itself, which callers are meant to use.
        and ast.unparse(node.func.value) not in LIFECYCLE_MODULE_NAMES
        and (path, ast.unparse(node.func.value)) not in NOT_A_VIDEO_CALL
    ]
    assert callers == [], "change a video's status through app.archive.lifecycle:\n" + "\n".join(callers)


def test_the_checks_see_the_owners() -> None:
    """Guards against the rules above passing because they look at nothing (a moved file, a renamed field)."""
    model = ast.parse(MODEL.read_text(encoding="utf-8"))
    assert {target.attr for target in assigned_attributes(model) if is_self(target.value)} >= GUARDED_FIELDS
    lifecycle = ast.parse(LIFECYCLE.read_text(encoding="utf-8"))
    called = {
        node.func.attr
        for node in ast.walk(lifecycle)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }
    assert called >= TRANSITIONS


def test_the_models_import_no_domain() -> None:
    """The rules live on the model so every domain can use them: `app.models` imports only `app.core` and itself."""
    for path in sorted((APP / "models").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module]
                if isinstance(node, ast.ImportFrom) and node.module and node.level == 0
                else []
            )
            for name in names:
                if name == "app" or name.startswith("app."):
                    assert name.startswith(("app.core", "app.models")), f"{path.name} imports {name}"
