"""The one JSON body parser: duplicate keys, nesting, encodings and numbers refused as 400 `invalid_json`."""

from __future__ import annotations

import sys

import pytest

from app.core import json_body
from app.core.errors import InvalidRequest


def refused(raw: bytes | str) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as caught:
        json_body.parse_body(raw.encode() if isinstance(raw, str) else raw)
    assert (caught.value.status_code, caught.value.code, caught.value.param) == (400, "invalid_json", None)
    return caught.value


def nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


class TestAccepted:
    def test_an_ordinary_document_is_returned_as_parsed(self) -> None:
        raw = b'{"prompt": "un chat \\u00e9 \xf0\x9f\x8e\xb9", "n": [1, 2.5, true, null], "o": {"a": "b"}}'
        assert json_body.parse_body(raw) == {
            "prompt": "un chat é 🎹",
            "n": [1, 2.5, True, None],
            "o": {"a": "b"},
        }

    def test_nesting_up_to_the_bound_is_accepted(self) -> None:
        assert json_body.parse_body(nested(json_body.MAX_DEPTH).encode()) is not None

    def test_the_same_key_in_different_objects_is_fine(self) -> None:
        assert json_body.parse_body(b'{"a": {"k": 1}, "b": {"k": 2}}') == {"a": {"k": 1}, "b": {"k": 2}}

    def test_an_empty_object_key_and_unicode_keys_are_fine(self) -> None:
        assert json_body.parse_body('{"": 1, "é": 2}'.encode()) == {"": 1, "é": 2}


class TestRefused:
    @pytest.mark.parametrize("depth", [json_body.MAX_DEPTH + 1, 1_000, 10_000, 100_000])
    def test_nesting_past_the_bound_is_refused_never_a_recursion_error(self, depth: int) -> None:
        assert "nested deeper" in refused(nested(depth)).message

    def test_deep_objects_are_refused_as_deep_arrays_are(self) -> None:
        assert "nested deeper" in refused('{"a":' * 10_000 + "1" + "}" * 10_000).message

    def test_nesting_is_refused_even_when_the_stack_is_already_deep(self) -> None:
        # The parser must not depend on how much stack the caller has left.
        def at_depth(levels: int) -> InvalidRequest:
            return at_depth(levels - 1) if levels else refused(nested(5_000))

        assert "nested deeper" in at_depth(sys.getrecursionlimit() - 100).message

    @pytest.mark.parametrize(
        "raw",
        ['{"prompt": "a", "prompt": "b"}', '{"m": {"a": "1", "a": "2"}}', '[{"x": 1, "x": 1}]'],
        ids=["top level", "nested", "inside an array, same value"],
    )
    def test_duplicate_keys_are_refused(self, raw: str) -> None:
        assert "more than once" in refused(raw).message

    @pytest.mark.parametrize(
        "raw",
        [b'{"prompt": "\xff"}', b'{"prompt": "\xc3"}', b"\xef\xbb\xbf\xff"],
        ids=["invalid byte", "truncated sequence", "after a BOM"],
    )
    def test_invalid_utf8_is_refused(self, raw: bytes) -> None:
        refused(raw)

    @pytest.mark.parametrize(
        "raw", ['{"p": "\\ud800"}', '{"\\udfff": "v"}', '["a\\udc00b"]'], ids=["high", "in a key", "low"]
    )
    def test_lone_surrogates_are_refused(self, raw: str) -> None:
        assert "Unicode" in refused(raw).message

    def test_a_surrogate_pair_is_one_character_and_fine(self) -> None:
        assert json_body.parse_body(b'{"p": "\\ud83c\\udfb9"}') == {"p": "🎹"}

    @pytest.mark.parametrize("raw", ["NaN", "[Infinity]", '{"x": -Infinity}', "1e400", "[-1e999]"])
    def test_non_finite_numbers_are_refused(self, raw: str) -> None:
        refused(raw)

    def test_an_integer_past_the_digit_limit_is_refused(self) -> None:
        refused("9" * 5_000)

    @pytest.mark.parametrize("raw", [b"", b"{", b'{"a": }', b"[1,]", b"{'a': 1}", b"\x00"])
    def test_malformed_json_is_refused(self, raw: bytes) -> None:
        refused(raw)

    def test_the_message_is_ours_not_the_parsers(self) -> None:
        message = refused(b'{"a": }').message
        assert "Expecting" not in message and "line 1" not in message


class TestObjects:
    def test_parse_object_refuses_anything_but_an_object(self) -> None:
        with pytest.raises(InvalidRequest) as caught:
            json_body.parse_object(b'["prompt"]')
        assert caught.value.code == "invalid_json"
        assert "must be an object" in caught.value.message

    def test_loads_raises_its_own_value_error_for_other_callers(self) -> None:
        with pytest.raises(json_body.JsonRefused):
            json_body.loads(nested(100))
