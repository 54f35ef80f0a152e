"""Who is calling: authenticate a bearer key; create, list and revoke callers' keys (CLI and admin API)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import keys
from app.auth.errors import Conflict
from app.auth.repository import CallerRepository, KeyRow
from app.core.errors import InvalidRequest, ResourceNotFound, Unauthenticated
from app.models import ApiKey, Caller

DEV_KEY_LABEL = "dev"
# The one answer to every refused key (unknown, revoked, expired, dev-only), whether or not it was looked up.
INCORRECT_KEY = "Incorrect API key provided."


@dataclass(frozen=True)
class IssuedKey:
    """A key just made: the plain key exists only here, to be shown once."""

    caller: Caller
    key: str
    api_key: ApiKey


@dataclass(frozen=True)
class Principal:
    """The authenticated party of a request: the caller and the very key it used."""

    caller: Caller
    api_key: ApiKey


async def authenticate(session: AsyncSession, *, presented_key: str, dev_mode: bool) -> Principal:
    """The caller and key behind `presented_key`; one error for unknown, revoked, expired or dev-only keys."""
    key_digest = keys.digest(presented_key)
    found = await CallerRepository.from_session(session).get_key_by_lookup(keys.lookup_of(key_digest))
    # compare_digest runs whether or not a row was found, against a dummy, so both paths cost the same.
    stored = found[0].digest if found else bytes(32)
    if not keys.matches(key_digest, stored) or found is None:
        raise Unauthenticated(INCORRECT_KEY)
    api_key, caller = found
    if api_key.label == DEV_KEY_LABEL and not dev_mode:
        raise Unauthenticated(INCORRECT_KEY)
    return Principal(caller=caller, api_key=api_key)


async def create_caller(
    session: AsyncSession,
    *,
    name: str,
    key: str | None = None,
    label: str = "",
    expires_at: datetime | None = None,
) -> IssuedKey:
    """A new caller with one key (generated unless given); the plain key is returned once, never stored."""
    repository = CallerRepository.from_session(session)
    if await repository.get_caller_by_name(name) is not None:
        raise Conflict(f"A caller named '{name}' already exists.", param="name")
    caller = Caller(name=name)
    await repository.add(caller)
    return await add_key(session, caller=caller, key=key, label=label, expires_at=expires_at)


async def add_key(
    session: AsyncSession,
    *,
    caller: Caller,
    key: str | None = None,
    label: str = "",
    expires_at: datetime | None = None,
    requests_per_minute: int | None = None,
) -> IssuedKey:
    if expires_at is not None and expires_at <= datetime.now(UTC):
        raise InvalidRequest("'expires_at' must be in the future.", param="expires_at", code="invalid_value")
    plain = key or keys.generate_key()
    key_digest = keys.digest(plain)
    api_key = ApiKey(
        caller_id=caller.id,
        lookup=keys.lookup_of(key_digest),
        digest=key_digest,
        prefix=keys.display_prefix(plain),
        label=label,
        expires_at=expires_at,
        requests_per_minute=requests_per_minute,
    )
    repository = CallerRepository.from_session(session)
    await repository.add(api_key)
    await repository.refresh(api_key)  # created_at comes from the database
    return IssuedKey(caller=caller, key=plain, api_key=api_key)


async def ensure_dev_caller(session: AsyncSession, *, key: str) -> Caller:
    """The `dev` caller with the dev key (idempotent); its key works only in dev mode."""
    repository = CallerRepository.from_session(session)
    caller = await repository.get_caller_by_name("dev")
    key_digest = keys.digest(key)
    if caller is None:
        return (await create_caller(session, name="dev", key=key, label=DEV_KEY_LABEL)).caller
    if await repository.get_key_by_lookup(keys.lookup_of(key_digest)) is None:
        await add_key(session, caller=caller, key=key, label=DEV_KEY_LABEL)
    return caller


# ----- administration ---------------------------------------------------------------------------


async def get_caller(session: AsyncSession, *, caller_id: uuid.UUID) -> Caller:
    caller = await CallerRepository.from_session(session).get_caller(caller_id)
    if caller is None:
        raise ResourceNotFound(f"No caller found with id '{caller_id}'.", param="caller_id")
    return caller


async def get_caller_by_name(session: AsyncSession, *, name: str) -> Caller:
    caller = await CallerRepository.from_session(session).get_caller_by_name(name)
    if caller is None:
        raise ResourceNotFound(f"No caller named '{name}'.", param="caller")
    return caller


async def list_callers(session: AsyncSession) -> Sequence[Caller]:
    return await CallerRepository.from_session(session).list_callers()


async def list_keys(session: AsyncSession, *, caller_id: uuid.UUID | None = None) -> list[KeyRow]:
    return await CallerRepository.from_session(session).list_keys(caller_id=caller_id)


async def find_key_id(session: AsyncSession, *, key_or_id: str) -> uuid.UUID:
    """A key's id from its id or from the plain key itself (to revoke a leaked key without looking it up)."""
    if not keys.looks_like_key(key_or_id):
        try:
            return uuid.UUID(key_or_id)
        except ValueError:
            pass
    found = await CallerRepository.from_session(session).get_key_by_lookup_any_state(
        keys.lookup_of(keys.digest(key_or_id))
    )
    if found is None or not keys.matches(keys.digest(key_or_id), found.digest):
        raise ResourceNotFound("No such key.", param="key")
    return found.id


async def revoke_key(session: AsyncSession, *, key_id: uuid.UUID) -> ApiKey:
    """Revoke a key: refused on every replica within 1 s (good keys are remembered for at most that long,
    app/auth/key_cache.py)."""
    key = await CallerRepository.from_session(session).revoke_key(key_id)
    if key is None:
        raise ResourceNotFound(f"No key found with id '{key_id}'.", param="key_id")
    return key


async def set_key_rate(session: AsyncSession, *, key_id: uuid.UUID, requests_per_minute: int | None) -> ApiKey:
    repository = CallerRepository.from_session(session)
    key = await repository.get_key(key_id)
    if key is None:
        raise ResourceNotFound(f"No key found with id '{key_id}'.", param="key_id")
    key.requests_per_minute = requests_per_minute
    await repository.refresh(key)
    return key
