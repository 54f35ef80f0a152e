"""API key material: generation, hashing and the constant-time comparison. Pure functions, no I/O."""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "vg_"
LOOKUP_CHARS = 16


def generate_key() -> str:
    """A new caller key: 256 bits from the OS CSPRNG, URL-safe."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    # Keys are random and long, so a fast hash is enough (no password stretching needed); what matters is
    # that the database never holds a usable key.
    return hashlib.sha256(key.encode("utf-8")).digest()


def lookup_of(key_digest: bytes) -> str:
    return key_digest.hex()[:LOOKUP_CHARS]


def matches(key_digest: bytes, stored_digest: bytes) -> bool:
    return hmac.compare_digest(key_digest, stored_digest)
