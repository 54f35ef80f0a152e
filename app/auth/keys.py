"""API key material: generation, hashing, the constant-time comparisons, and reading `Authorization: Bearer`.
Pure functions, no I/O. The one bearer parser and the one admin-key check of the gateway live here."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from app.core.config import Settings

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


# A generated key shows `vg_` plus 4 of its 43 random characters (24 of 256 bits): enough to tell keys apart
# in a list, useless to an attacker. Keys not made here (the dev key, imported keys) show only 3 characters.
DISPLAY_RANDOM_CHARS = 4
GENERATED_KEY_MIN_CHARS = 40


def display_prefix(key: str) -> str:
    if key.startswith(KEY_PREFIX) and len(key) >= GENERATED_KEY_MIN_CHARS:
        return key[: len(KEY_PREFIX) + DISPLAY_RANDOM_CHARS]
    return key[: min(3, len(key) // 4)]


def looks_like_key(value: str) -> bool:
    """Whether `value` is shaped like a generated key (the CLI accepts a key or a key id)."""
    return value.startswith(KEY_PREFIX) and len(value) >= GENERATED_KEY_MIN_CHARS


def parse_bearer(header: str | None) -> str | None:
    """The credentials of an `Authorization: Bearer <credentials>` header value (scheme in any case), or None
    when the header is missing, of another scheme, or carries nothing."""
    scheme, _, credentials = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not credentials.strip():
        return None
    return credentials.strip()


def admin_key_of(settings: Settings) -> str:
    """The configured admin key (`VG_ADMIN_API_KEY`), "" when unset: then no admin API and no console exist."""
    return settings.admin_api_key.get_secret_value() if settings.admin_api_key else ""


def admin_key_matches(candidate: str, settings: Settings) -> bool:
    """Whether `candidate` is the admin key; never when none is configured. Constant time, and over digests, so
    neither the configured key's content nor its length leaks."""
    configured = admin_key_of(settings)
    if not configured:
        return False
    expected = hashlib.sha256(configured.encode("utf-8")).digest()
    return hmac.compare_digest(hashlib.sha256(candidate.encode("utf-8")).digest(), expected)
