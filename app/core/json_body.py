"""The one JSON parser of request bodies: what it refuses, and the 400 `invalid_json` a refusal becomes.

Every JSON body the gateway reads goes through `loads` (directly, through `parse_body` / `parse_object`, or,
for the routes whose body FastAPI validates, through `app.core.json_route.JsonBodyRoute`). It refuses what
`json.loads` lets through or turns into a 500:

- nesting deeper than `MAX_DEPTH` (a 10,000-deep body exhausts the parser's recursion: `RecursionError`);
- a key repeated within one object (`json.loads` keeps the last one silently, so a proxy that reads the
  first and we who read the last would act on different requests);
- bytes that are not UTF-8 and strings holding lone surrogates (`"\\ud800"`), which no UTF-8 text, and so
  no Postgres column, can hold;
- `NaN`, `Infinity` and numbers out of float range (not JSON; they break the arithmetic they reach), and
  integers past CPython's digit limit.

Messages are ours: the parser's own text (positions, Python's wording) never reaches the caller.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any, Final

from app.core.errors import InvalidRequest

# Far beyond any body of ours (the deepest, a create's `input_reference`, is 2), far below the C parser's
# recursion limit, so the bound, not the interpreter, decides.
MAX_DEPTH: Final = 64
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")
_MAX_KEY_SHOWN = 40


class JsonRefused(ValueError):
    """A body `loads` will not take; the message says why and is safe to show the caller."""


def _pairs_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                shown = key[:_MAX_KEY_SHOWN].encode("unicode_escape").decode("ascii")
                raise JsonRefused(f"The JSON body has the key '{shown}' more than once in one object.")
            seen.add(key)
    return document


def _refuse_constant(name: str) -> Any:
    raise JsonRefused(f"The JSON body contains {name}, which JSON does not allow.")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise JsonRefused("The JSON body contains a number out of range.")
    return value


def _bounded_int(text: str) -> int:
    try:
        return int(text)
    except ValueError:  # past CPython's digit limit (4300 digits)
        raise JsonRefused("The JSON body contains a number out of range.") from None


def loads(raw: bytes | str, *, max_depth: int = MAX_DEPTH) -> Any:
    """The parsed document, or `JsonRefused` (never `RecursionError`, never another exception type)."""
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError:
        raise JsonRefused("The JSON body is not valid UTF-8.") from None
    try:
        document = json.loads(
            text,
            object_pairs_hook=_pairs_without_duplicates,
            parse_constant=_refuse_constant,
            parse_float=_finite_float,
            parse_int=_bounded_int,
        )
    except JsonRefused:
        raise
    except RecursionError:
        # The C parser guards its own recursion: deep input ends here, at whatever depth the stack allowed.
        raise JsonRefused(f"The JSON body is nested deeper than {max_depth} levels.") from None
    except ValueError:
        # JSONDecodeError: the parser's wording (and the position it names) is not passed on.
        raise JsonRefused("We could not parse the JSON body of your request.") from None
    _check_shape(document, max_depth)
    return document


def _check_shape(document: Any, max_depth: int) -> None:
    """Depth and strings, walked without recursion (the document may be as deep as the parser allowed)."""
    pending: list[tuple[Any, int]] = [(document, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            if depth > max_depth:
                raise JsonRefused(f"The JSON body is nested deeper than {max_depth} levels.")
            for key, item in value.items():
                _check_text(key)
                pending.append((item, depth + 1))
        elif isinstance(value, list):
            if depth > max_depth:
                raise JsonRefused(f"The JSON body is nested deeper than {max_depth} levels.")
            pending.extend((item, depth + 1) for item in value)
        elif isinstance(value, str):
            _check_text(value)


def _check_text(value: str) -> None:
    if _LONE_SURROGATE.search(value):
        raise JsonRefused("The JSON body contains a string that is not valid Unicode (a lone surrogate escape).")


def parse_body(raw: bytes) -> Any:
    """The document, or 400 `invalid_json` in OpenAI's shape."""
    try:
        return loads(raw)
    except JsonRefused as exc:
        raise InvalidRequest(str(exc), code="invalid_json") from None


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object, or 400 `invalid_json`."""
    document = parse_body(raw)
    if not isinstance(document, dict):
        raise InvalidRequest("The JSON body must be an object.", code="invalid_json")
    return document
