"""Queries on idempotency records. Every time is the database's `now()`; every change after the claim is
fenced by the claim token, so a request whose claim expired and was taken over changes nothing."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import Repository
from app.models import IdempotencyRecord
from app.models.idempotency import IdempotencyState


@dataclass(frozen=True)
class StoredAnswer:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


@dataclass(frozen=True)
class ExistingRecord:
    fingerprint: str
    state: IdempotencyState
    age: timedelta
    answer: StoredAnswer | None


class IdempotencyRepository(Repository):
    async def claim(
        self, *, caller_id: uuid.UUID, key: str, fingerprint: str, token: uuid.UUID, ttl: timedelta
    ) -> bool:
        """Insert an in-flight claim; an expired record under the same key is replaced. False if a live
        record (in flight or completed) holds the key."""
        fresh = {
            "fingerprint": fingerprint,
            "state": IdempotencyState.IN_FLIGHT.value,
            "claim_token": token,
            "created_at": func.now(),
            "expires_at": func.now() + ttl,
            "completed_at": None,
            "response_status": None,
            "response_headers": None,
            "response_body": None,
        }
        statement = (
            insert(IdempotencyRecord)
            .values(caller_id=caller_id, key=key, **fresh)
            .on_conflict_do_update(
                index_elements=[IdempotencyRecord.caller_id, IdempotencyRecord.key],
                set_=fresh,
                where=IdempotencyRecord.expires_at <= func.now(),
            )
            .returning(IdempotencyRecord.claim_token)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() == token

    async def get_live(self, *, caller_id: uuid.UUID, key: str) -> ExistingRecord | None:
        statement = select(
            IdempotencyRecord.fingerprint,
            IdempotencyRecord.state,
            func.now() - IdempotencyRecord.created_at,
            IdempotencyRecord.response_status,
            IdempotencyRecord.response_headers,
            IdempotencyRecord.response_body,
        ).where(
            IdempotencyRecord.caller_id == caller_id,
            IdempotencyRecord.key == key,
            IdempotencyRecord.expires_at > func.now(),
        )
        row = (await self.session.execute(statement)).first()
        if row is None:
            return None
        fingerprint, state, age, status, headers, body = row
        answer = None
        if status is not None:
            answer = StoredAnswer(status=status, headers=[(str(n), str(v)) for n, v in headers or []], body=body or b"")
        return ExistingRecord(fingerprint=fingerprint, state=IdempotencyState(state), age=age, answer=answer)

    async def complete(self, *, caller_id: uuid.UUID, key: str, token: uuid.UUID, answer: StoredAnswer) -> bool:
        headers: list[Any] = [[name, value] for name, value in answer.headers]
        statement = (
            update(IdempotencyRecord)
            .where(
                IdempotencyRecord.caller_id == caller_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.claim_token == token,
                IdempotencyRecord.state == IdempotencyState.IN_FLIGHT.value,
            )
            .values(
                state=IdempotencyState.COMPLETED.value,
                completed_at=func.now(),
                response_status=answer.status,
                response_headers=headers,
                response_body=answer.body,
            )
        )
        result = await self.session.execute(statement)
        return int(result.rowcount) == 1  # type: ignore[attr-defined]

    async def release(self, *, caller_id: uuid.UUID, key: str, token: uuid.UUID) -> None:
        await self.session.execute(
            delete(IdempotencyRecord).where(
                IdempotencyRecord.caller_id == caller_id,
                IdempotencyRecord.key == key,
                IdempotencyRecord.claim_token == token,
                IdempotencyRecord.state == IdempotencyState.IN_FLIGHT.value,
            )
        )

    async def purge_expired(self, *, limit: int) -> int:
        """Delete up to `limit` expired records, skipping any another transaction holds."""
        expired = (
            select(IdempotencyRecord.caller_id, IdempotencyRecord.key)
            .where(IdempotencyRecord.expires_at <= func.now())
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        result = await self.session.execute(
            delete(IdempotencyRecord).where(tuple_(IdempotencyRecord.caller_id, IdempotencyRecord.key).in_(expired))
        )
        return int(result.rowcount)  # type: ignore[attr-defined]
