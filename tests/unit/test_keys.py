"""API key material: random, stored only as a digest, compared on the full digest."""

from __future__ import annotations

from app.auth import keys


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
