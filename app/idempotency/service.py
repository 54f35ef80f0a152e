"""Claim, replay, complete or release an `Idempotency-Key`, scoped to the authenticated caller.

Decisions (see also docs/reference.md#idempotency-key and docs/decisions/003-idempotency-as-middleware.md):
- Scope: the caller (`callers.id`), found from the bearer key exactly as the routes authenticate it. A key
  string is only meaningful to the caller that sent it: caller B sending A's key gets a claim of its own.
- The claim is an `INSERT ... ON CONFLICT` committed in its own short transaction before the handler runs,
  so concurrent repeats see it at once: same fingerprint → 409 (in flight) or the stored answer; another
  fingerprint → 422.
- What is kept: every 2xx, and every 5xx except 503. A 5xx may come after a render was started (a lost
  upstream answer, a crash after the upstream call); its repeat gets the same answer, never a second
  render. 503 means nothing was done (our database or the upstream was unreachable), like any 4xx
  (validation, limits, upstream's own refusal): the key is released so the caller may retry or fix the
  request under the same key.
- A claim that stays in flight longer than any create can take belongs to a request that died mid-way; it
  may have started a render, so it is never taken over: repeats get 409 with `x-should-retry: false`
  until the key expires, and the caller looks for the video in `GET /v1/videos`.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.auth import service as auth_service
from app.core.errors import IdempotencyKeyInUse, IdempotencyKeyReused, Unauthenticated
from app.idempotency.repository import IdempotencyRepository, StoredAnswer
from app.models.idempotency import IdempotencyState

# Expired records are deleted a few at a time by the requests that claim keys.
PURGE_BATCH = 100
# A claim may find its key held by a record that is released in between; it then simply tries again.
CLAIM_ROUNDS = 3


@dataclass(frozen=True)
class Claim:
    caller_id: uuid.UUID
    key: str
    token: uuid.UUID


@dataclass(frozen=True)
class Replay:
    answer: StoredAnswer


def keeps_answer(status: int) -> bool:
    """Whether an answer is stored for repeats (True) or the key released (False)."""
    if status >= 500:
        return status != 503
    return status < 400


class IdempotencyService:
    def __init__(self, *, ttl_seconds: float, stale_after_seconds: float, dev_mode: bool) -> None:
        self._ttl = timedelta(seconds=ttl_seconds)
        self._stale_after = timedelta(seconds=stale_after_seconds)
        self._dev_mode = dev_mode

    async def begin(
        self,
        sessionmaker: async_sessionmaker[AsyncSession],
        *,
        presented_key: str,
        key: str,
        fingerprint: str,
    ) -> Claim | Replay | None:
        """A claim to run the request, or the stored answer to replay; None if the caller is not
        authenticated (the route answers that itself). Raises `IdempotencyKeyReused` (422) or
        `IdempotencyKeyInUse` (409)."""
        async with sessionmaker() as session, session.begin():
            try:
                principal = await auth_service.authenticate(
                    session, presented_key=presented_key, dev_mode=self._dev_mode
                )
            except Unauthenticated:
                return None
            caller_id = principal.caller.id
            repository = IdempotencyRepository.from_session(session)
            for _ in range(CLAIM_ROUNDS):
                token = uuid.uuid4()
                if await repository.claim(
                    caller_id=caller_id, key=key, fingerprint=fingerprint, token=token, ttl=self._ttl
                ):
                    await repository.purge_expired(limit=PURGE_BATCH)
                    return Claim(caller_id=caller_id, key=key, token=token)
                existing = await repository.get_live(caller_id=caller_id, key=key)
                if existing is None:
                    continue  # released or expired since the insert: claim again
                if existing.fingerprint != fingerprint:
                    raise IdempotencyKeyReused(
                        "This Idempotency-Key was already used with a different request; "
                        "use a new key for a new request.",
                        param="Idempotency-Key",
                    )
                if existing.state is IdempotencyState.COMPLETED and existing.answer is not None:
                    return Replay(existing.answer)
                raise self._in_flight(existing.age)
        raise IdempotencyKeyInUse("This Idempotency-Key is being claimed concurrently; retry shortly.")

    def _in_flight(self, age: timedelta) -> IdempotencyKeyInUse:
        if age < self._stale_after:
            return IdempotencyKeyInUse(
                "A request with this Idempotency-Key is still in progress; retry shortly to get its answer.",
                param="Idempotency-Key",
                headers={"retry-after": "1"},
            )
        return IdempotencyKeyInUse(
            "A request with this Idempotency-Key never finished, and it may have started a render. "
            "Look for it with GET /v1/videos before sending a new request with a new key.",
            param="Idempotency-Key",
            code="idempotency_request_unfinished",
            headers={"x-should-retry": "false"},
        )

    async def finish(self, sessionmaker: async_sessionmaker[AsyncSession], claim: Claim, answer: StoredAnswer) -> bool:
        """Store the answer for repeats, or release the key; False if the claim was no longer ours."""
        async with sessionmaker() as session, session.begin():
            repository = IdempotencyRepository.from_session(session)
            if keeps_answer(answer.status):
                return await repository.complete(
                    caller_id=claim.caller_id, key=claim.key, token=claim.token, answer=answer
                )
            await repository.release(caller_id=claim.caller_id, key=claim.key, token=claim.token)
            return True
