"""Row 49: credentials in the URL are refused and scrubbed from the request scope; key prefixes are short."""

from __future__ import annotations

import pytest
from starlette.requests import Request

from app.auth import keys
from app.auth.deps import refuse_keys_in_query
from app.auth.errors import KeyInQueryString


def request_with(query: bytes) -> Request:
    return Request({"type": "http", "method": "GET", "path": "/v1/videos", "query_string": query, "headers": []})


class TestKeysInQuery:
    @pytest.mark.parametrize("name", ["api_key", "key", "API_KEY", "apikey", "access_token"])
    def test_refused_and_scrubbed_from_the_scope(self, name: str) -> None:
        request = request_with(f"limit=2&{name}=vg_canary_secret".encode())
        with pytest.raises(KeyInQueryString) as caught:
            refuse_keys_in_query(request)
        assert caught.value.status_code == 400
        assert b"vg_canary_secret" not in request.scope["query_string"]
        # What the access log would print still shows the other parameters.
        assert request.scope["query_string"].startswith(b"limit=2&")

    def test_ordinary_parameters_pass(self) -> None:
        request = request_with(b"limit=2&order=asc&after=video_1")
        refuse_keys_in_query(request)
        assert request.scope["query_string"] == b"limit=2&order=asc&after=video_1"


class TestDisplayPrefix:
    def test_a_generated_key_shows_seven_characters(self) -> None:
        key = keys.generate_key()
        assert keys.display_prefix(key) == key[:7]

    def test_short_or_foreign_keys_show_at_most_three(self) -> None:
        assert keys.display_prefix("vg-dev-key") == "vg"  # a quarter of a short key at most
        assert keys.display_prefix("x" * 30) == "xxx"
        assert keys.display_prefix("abc") == ""
