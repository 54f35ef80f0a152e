"""Who is calling: authenticate a bearer key, and create callers and keys (CLI, dev set-up)."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.auth import keys
from app.auth.repository import CallerRepository
from app.core.errors import Unauthenticated
from app.models import ApiKey, Caller

DEV_KEY_LABEL = "dev"


@dataclass(frozen=True)
class IssuedKey:
    caller: Caller
    key: str


async def authenticate(session: AsyncSession, *, presented_key: str, dev_mode: bool) -> Caller:
    """The caller owning `presented_key`; the same error for a missing, unknown, revoked or dev-only key."""
    key_digest = keys.digest(presented_key)
    found = await CallerRepository.from_session(session).get_key_by_lookup(keys.lookup_of(key_digest))
    # compare_digest runs whether or not a row was found, against a dummy, so both paths cost the same.
    stored = found[0].digest if found else bytes(32)
    if not keys.matches(key_digest, stored) or found is None:
        raise Unauthenticated("Incorrect API key provided.")
    api_key, caller = found
    if api_key.label == DEV_KEY_LABEL and not dev_mode:
        raise Unauthenticated("Incorrect API key provided.")
    return caller


async def create_caller(session: AsyncSession, *, name: str, key: str | None = None, label: str = "") -> IssuedKey:
    """A new caller with one key (generated unless given); the plain key is returned once, never stored."""
    repository = CallerRepository.from_session(session)
    caller = Caller(name=name)
    await repository.add(caller)
    issued = await add_key(session, caller=caller, key=key, label=label)
    return issued


async def add_key(session: AsyncSession, *, caller: Caller, key: str | None = None, label: str = "") -> IssuedKey:
    plain = key or keys.generate_key()
    key_digest = keys.digest(plain)
    await CallerRepository.from_session(session).add(
        ApiKey(caller_id=caller.id, lookup=keys.lookup_of(key_digest), digest=key_digest, label=label)
    )
    return IssuedKey(caller=caller, key=plain)


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
