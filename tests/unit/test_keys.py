"""API key material: random, stored only as a digest, compared on the full digest."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from app.auth import keys
from app.core.config import Mode, Settings


class TestKeys:
    def test_generated_keys_are_distinct_and_long(self) -> None:
        generated = {keys.generate_key() for _ in range(100)}
        assert len(generated) == 100
        assert all(key.startswith("vg_") and len(key) >= 40 for key in generated)

    def test_digest_matches_only_the_same_key(self) -> None:
        key = keys.generate_key()
        assert keys.matches(keys.digest(key), keys.digest(key))
        assert not keys.matches(keys.digest(key), keys.digest(key + "x"))

    def test_lookup_is_a_prefix_of_the_digest_not_of_the_key(self) -> None:
        key = keys.generate_key()
        lookup = keys.lookup_of(keys.digest(key))
        assert lookup == keys.digest(key).hex()[:16]
        assert lookup not in key


class TestBearer:
    """The one parser of `Authorization: Bearer`, for callers' keys, the admin key and the idempotency middleware."""

    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("Bearer vg_abc", "vg_abc"),
            ("bearer vg_abc", "vg_abc"),
            ("BEARER   vg_abc  ", "vg_abc"),
            (None, None),
            ("", None),
            ("Bearer", None),
            ("Bearer    ", None),
            ("Basic dXNlcjpwYXNz", None),
            ("Bearervg_abc", None),
        ],
    )
    def test_parse_bearer(self, header: str | None, expected: str | None) -> None:
        assert keys.parse_bearer(header) == expected


class TestAdminKey:
    """The one admin-key check, for the admin API and the console's sign-in."""

    def test_only_the_configured_key_matches(self) -> None:
        settings = Settings(mode=Mode.DEV, admin_api_key=SecretStr("vg-admin-0123456789abcdef"))
        assert keys.admin_key_matches("vg-admin-0123456789abcdef", settings)
        assert not keys.admin_key_matches("vg-admin-0123456789abcdeF", settings)
        assert not keys.admin_key_matches("", settings)

    @pytest.mark.parametrize("configured", [None, ""])
    def test_nothing_matches_without_a_configured_key(self, configured: str | None) -> None:
        settings = Settings(mode=Mode.DEV, admin_api_key=None if configured is None else SecretStr(configured))
        assert keys.admin_key_of(settings) == ""
        assert not keys.admin_key_matches("", settings)
        assert not keys.admin_key_matches("anything", settings)
