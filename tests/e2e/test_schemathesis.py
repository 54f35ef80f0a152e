"""Schemathesis against the live API (a real uvicorn process) with the committed openapi.yaml's contract.

Every operation gets generated requests, valid and invalid; the checks: no 5xx ever, and every response
whose status the spec documents matches its schema. The app serves the same document as openapi.yaml
(`tests/unit/test_openapi.py` keeps them identical), so this is the committed contract being tested.

Then the hostile pass, over every route (admin and the webhook receiver included): the generated requests
with path, query and body values swapped for NUL bytes, control characters, numbers past any column, long
and nested values (Hypothesis draws which), and, on every route, raw bodies no generator sends (10,000-deep
nesting, duplicate keys, a 5,000-digit number, NaN, a lone surrogate, invalid UTF-8) and a NUL in every path
and query parameter. Any 5xx fails, and so does an unhandled error in the API's log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from app.core.config import S3Settings
from tests.support.stack import Stack, running_stack

pytestmark = pytest.mark.e2e

ADMIN_KEY = "vg-admin-schemathesis-0123456789"
COMMITTED = Path(__file__).resolve().parents[2] / "openapi.yaml"


@pytest.fixture(scope="module")
def live_stack(seaweedfs_s3: S3Settings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    from app import migrate
    from tests.support import postgres

    name = postgres.create_database("vg_schemathesis")
    url = postgres.sqlalchemy_url(name)
    try:
        migrate.upgrade(url)
        s3 = seaweedfs_s3.model_copy(update={"prefix": "schemathesis"})
        with running_stack(
            database_url=url, s3=s3, workdir=tmp_path_factory.mktemp("st"), workers=0, VG_ADMIN_API_KEY=ADMIN_KEY
        ) as stack:
            yield stack
    finally:
        postgres.drop_database(name)


@pytest.fixture(scope="module")
def api_key(live_stack: Stack) -> str:
    return live_stack.new_caller_key()


# A generated request; the operations come from the loaded document (`operations_of`), typed no further.
ApiCase = schemathesis.Case[Any]


def operations_of(schema: Any) -> list[Any]:
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 25  # the whole contract (admin and webhooks included), not a stray subset
    return operations


def auth_for(path: str, api_key: str) -> dict[str, str]:
    """The admin key on the admin API (on in this stack), the caller's key everywhere else."""
    return {"authorization": f"Bearer {ADMIN_KEY if path.startswith('/v1/admin') else api_key}"}


def test_no_server_errors_and_documented_responses_match(live_stack: Stack, api_key: str) -> None:
    operations = operations_of(schemathesis.openapi.from_path(COMMITTED))

    statuses: list[int] = []
    # (Schemathesis' pytest plugin does not run under pytest 9 yet, so Hypothesis drives each operation.)
    for operation in operations:

        @settings(max_examples=10, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy())
        def exercise(case: ApiCase) -> None:
            response = case.call_and_validate(
                base_url=live_stack.api_url,
                headers=auth_for(case.operation.path, api_key),
                checks=[not_a_server_error, response_schema_conformance],
            )
            statuses.append(response.status_code)

        exercise()
    # Requests really went out, and both accepted and refused inputs were generated.
    assert len(statuses) >= 3 * len(operations)
    assert any(status < 300 for status in statuses) and any(400 <= status < 500 for status in statuses)


# ----- the hostile pass -----------------------------------------------------------------------------

NUL_TEXT = st.one_of(
    st.sampled_from(["\x00", "video_\x00", "\x00" * 80, "a\x00b", "cbe_%00", "%00"]),
    st.builds(lambda head, tail: f"{head}\x00{tail}", st.text(max_size=12), st.text(max_size=12)),
)
CONTROL_TEXT = st.text(alphabet=st.characters(codec="utf-8", categories=["Cc", "Cf", "Zl", "Zp"]), min_size=1)
LONG_TEXT = st.sampled_from(["x" * 5000, "é" * 3000, "🎹" * 2000, "../" * 100])
HUGE_NUMBERS = st.sampled_from(
    [10**30, -(10**30), 2**31, -(2**31) - 1, 2**63, -(2**63) - 1, 2**64, 10**4000, 1e308, -1e308, 5e-324]
)
HOSTILE_SCALARS = st.one_of(NUL_TEXT, CONTROL_TEXT, LONG_TEXT, HUGE_NUMBERS.map(str))


def nested(depth: int) -> Any:
    value: Any = "leaf"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


# Values a JSON body may carry; depths past the parser's bound (64) but within what the client can serialise.
HOSTILE_JSON = st.one_of(
    NUL_TEXT,
    CONTROL_TEXT,
    LONG_TEXT,
    HUGE_NUMBERS,
    st.integers(min_value=65, max_value=400).map(nested),
    st.dictionaries(NUL_TEXT, st.just("v"), min_size=1, max_size=3),
    st.lists(HUGE_NUMBERS, min_size=1, max_size=3),
)


def mutate(case: ApiCase, data: st.DataObject) -> None:
    """Swap some of the generated path, query and body values for hostile ones (Hypothesis decides which)."""
    for name in list(case.path_parameters or {}):
        if data.draw(st.booleans(), label=f"hostile path {name}"):
            case.path_parameters[name] = data.draw(HOSTILE_SCALARS)
    for parameter in case.operation.query:
        if data.draw(st.booleans(), label=f"hostile query {parameter.name}"):
            case.query = {**(case.query or {}), parameter.name: data.draw(HOSTILE_SCALARS)}
    if isinstance(case.body, dict):
        values = HOSTILE_JSON if case.media_type == "application/json" else HOSTILE_SCALARS
        for key in list(case.body):
            if data.draw(st.booleans(), label=f"hostile body {key}"):
                case.body[key] = data.draw(values)
        if case.media_type == "application/json" and data.draw(st.booleans(), label="hostile key"):
            case.body[data.draw(NUL_TEXT)] = data.draw(values)


def test_hostile_values_never_get_a_server_error(live_stack: Stack, api_key: str) -> None:
    operations = operations_of(schemathesis.openapi.from_path(COMMITTED))
    statuses: list[int] = []
    for operation in operations:

        @settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
        @given(case=operation.as_strategy(), data=st.data())
        def exercise(case: ApiCase, data: st.DataObject) -> None:
            mutate(case, data)
            response = case.call(base_url=live_stack.api_url, headers=auth_for(case.operation.path, api_key))
            statuses.append(response.status_code)
            assert response.status_code < 500, (case.method, case.formatted_path, case.query, response.text[:500])

        exercise()
    assert len(statuses) >= 10 * len(operations)
    assert any(400 <= status < 500 for status in statuses)
    assert_no_unhandled_errors(live_stack)


RAW_BODIES = {
    "nested 10,000 deep": b"[" * 10_000 + b"]" * 10_000,
    "object nested 10,000 deep": b'{"a":' * 10_000 + b"1" + b"}" * 10_000,
    "duplicate keys": b'{"prompt": "a", "prompt": "b", "name": "n", "name": "m", "url": "u", "url": "v"}',
    "5,000-digit number": b'{"prompt": ' + b"9" * 5_000 + b"}",
    "NaN": b'{"prompt": NaN, "requests_per_minute": Infinity}',
    "lone surrogate": b'{"prompt": "\\ud800", "name": "\\udfff", "label": "\\ud800"}',
    "invalid UTF-8": b'{"prompt": "\xff\xfe", "label": "\xc3"}',
    "NUL escapes": b'{"prompt": "a\\u0000", "label": "\\u0000", "url": "https://h.test/\\u0000", "name": "\\u0000"}',
}


def filled_path(operation: Any, *, hostile: str | None = None) -> str:
    """The operation's path with each parameter set to a well-formed value, or to `hostile` (encoded)."""
    path: str = operation.path
    for parameter in operation.path_parameters:
        schema = parameter.definition.get("schema", {})
        value = str(uuid.uuid4()) if schema.get("format") == "uuid" else "video_0123456789abcdef"
        path = path.replace("{" + parameter.name + "}", quote(hostile if hostile is not None else value, safe=""))
    return path


def test_raw_hostile_bodies_and_nul_parameters_on_every_route(live_stack: Stack, api_key: str) -> None:
    operations = operations_of(schemathesis.openapi.from_path(COMMITTED))
    failures: list[str] = []
    with httpx.Client(base_url=live_stack.api_url, timeout=30) as client:
        for operation in operations:
            method, auth = operation.method.upper(), auth_for(operation.path, api_key)
            attempts: list[tuple[str, dict[str, Any]]] = []
            if operation.body:
                attempts += [
                    (f"{name} to {filled_path(operation)}", {"url": filled_path(operation), "content": raw})
                    for name, raw in RAW_BODIES.items()
                ]
            if operation.path_parameters:
                attempts.append(("NUL in the path", {"url": filled_path(operation, hostile="id_\x00")}))
            for parameter in operation.query:
                params = {parameter.name: "x\x00y"}
                attempts.append((f"NUL in ?{parameter.name}", {"url": filled_path(operation), "params": params}))
            for what, request in attempts:
                headers = {**auth, "content-type": "application/json"}
                try:
                    response = client.request(method, headers=headers, **request)
                except httpx.TransportError as exc:  # a connection the server dropped is no better than a 500
                    failures.append(f"{method} {operation.path} ({what}): {type(exc).__name__}")
                    continue
                if response.status_code >= 500:
                    failures.append(f"{method} {operation.path} ({what}): {response.status_code} {response.text[:200]}")
    assert not failures, "\n".join(failures)
    assert_no_unhandled_errors(live_stack)


def assert_no_unhandled_errors(stack: Stack) -> None:
    log = (stack.logs / "api.log").read_text(errors="replace")
    assert "unhandled error" not in log and "Exception in ASGI application" not in log
