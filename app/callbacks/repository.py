"""Every query of the callback tables (their one repository, decision 008): secrets, standing endpoints, the
outbox and its attempt log.

The outbox is claimed like the archive queue: `FOR UPDATE SKIP LOCKED` in a short transaction that also
pushes `next_attempt_at` past the attempt's time budget (the claim is its lease), so concurrent workers
never send the same row at once; the outcome is written only if the row is still at the claimed attempt.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import Repository
from app.models import (
    CallbackAttempt,
    CallbackDelivery,
    CallbackEndpoint,
    CallbackSecret,
    DeliveryState,
)


@dataclass(frozen=True)
class ClaimedDelivery:
    id: int
    webhook_id: str
    event_type: str
    caller_id: uuid.UUID
    url: str
    payload: str
    attempts: int  # including the one just claimed


class CallbackRepository(Repository):
    # ----- secrets ------------------------------------------------------------------------------

    async def ensure_secret(self, caller_id: uuid.UUID, *, new_secret: str) -> CallbackSecret:
        """The caller's secret, created with `new_secret` if it has none (concurrent first uses make one)."""
        await self.session.execute(
            insert(CallbackSecret)
            .values(caller_id=caller_id, secret=new_secret)
            .on_conflict_do_nothing(index_elements=["caller_id"])
        )
        row = await self.session.execute(
            select(CallbackSecret)
            .where(CallbackSecret.caller_id == caller_id)
            .execution_options(populate_existing=True)
        )
        return row.scalar_one()

    async def rotate_secret(self, caller_id: uuid.UUID, *, new_secret: str, grace_seconds: float) -> CallbackSecret:
        await self.ensure_secret(caller_id, new_secret=new_secret)
        row = await self.session.execute(
            update(CallbackSecret)
            .where(CallbackSecret.caller_id == caller_id)
            .values(
                previous_secret=CallbackSecret.secret,
                previous_valid_until=func.now() + timedelta(seconds=grace_seconds),
                secret=new_secret,
                rotated_at=func.now(),
            )
            .returning(CallbackSecret)
            .execution_options(populate_existing=True)
        )
        return row.scalar_one()

    async def signing_secrets(self, caller_ids: set[uuid.UUID]) -> dict[uuid.UUID, list[str]]:
        """Per caller: the current secret, plus the previous one while its grace period lasts."""
        previous_valid = CallbackSecret.previous_valid_until > func.now()
        rows = await self.session.execute(
            select(
                CallbackSecret.caller_id, CallbackSecret.secret, CallbackSecret.previous_secret, previous_valid
            ).where(CallbackSecret.caller_id.in_(caller_ids))
        )
        found: dict[uuid.UUID, list[str]] = {}
        for caller_id, secret, previous, still_valid in rows.all():
            found[caller_id] = [secret, previous] if previous and still_valid else [secret]
        return found

    # ----- endpoints ----------------------------------------------------------------------------

    async def live_endpoints(self, caller_id: uuid.UUID) -> Sequence[CallbackEndpoint]:
        rows = await self.session.execute(
            select(CallbackEndpoint)
            .where(CallbackEndpoint.caller_id == caller_id, CallbackEndpoint.deleted_at.is_(None))
            .order_by(CallbackEndpoint.created_at, CallbackEndpoint.id)
        )
        return rows.scalars().all()

    async def add_endpoint_within(
        self, caller_id: uuid.UUID, *, endpoint_id: str, url: str, max_endpoints: int
    ) -> CallbackEndpoint | None:
        """Subscribe `url` unless the caller already has `max_endpoints` live ones; None when over.

        The count and the insert are serialized per caller (`lock_endpoints`), so concurrent subscriptions
        cannot together pass the cap. A URL already subscribed is returned, at the cap too.
        """
        await self.lock_endpoints(caller_id)
        live = CallbackEndpoint.caller_id == caller_id, CallbackEndpoint.deleted_at.is_(None)
        existing = await self.session.execute(select(CallbackEndpoint).where(*live, CallbackEndpoint.url == url))
        if (endpoint := existing.scalar_one_or_none()) is not None:
            return endpoint
        count_live = select(func.count()).select_from(CallbackEndpoint).where(*live)
        count = (await self.session.execute(count_live)).scalar_one()
        if count >= max_endpoints:
            return None
        return await self.add_endpoint(caller_id, endpoint_id=endpoint_id, url=url)

    async def lock_endpoints(self, caller_id: uuid.UUID) -> None:
        """Hold, until this transaction ends, the lock under which the caller's endpoints are counted and added.

        An advisory lock on the caller, not a row lock: before its first endpoint there is no row to lock.
        """
        lock_key = func.hashtextextended(f"callback-endpoints:{caller_id}", 0)
        await self.session.execute(select(func.pg_advisory_xact_lock(lock_key)))

    async def add_endpoint(self, caller_id: uuid.UUID, *, endpoint_id: str, url: str) -> CallbackEndpoint:
        """Subscribe `url` (once: subscribing it again returns the live endpoint)."""
        await self.session.execute(
            insert(CallbackEndpoint)
            .values(id=endpoint_id, caller_id=caller_id, url=url)
            .on_conflict_do_nothing(
                index_elements=["caller_id", "url"], index_where=CallbackEndpoint.deleted_at.is_(None)
            )
        )
        row = await self.session.execute(
            select(CallbackEndpoint).where(
                CallbackEndpoint.caller_id == caller_id,
                CallbackEndpoint.url == url,
                CallbackEndpoint.deleted_at.is_(None),
            )
        )
        return row.scalar_one()

    async def delete_endpoint(self, caller_id: uuid.UUID, endpoint_id: str) -> bool:
        """Unsubscribe, and cancel what is still pending for it; False if no such live endpoint of the caller."""
        deleted = await self.session.execute(
            update(CallbackEndpoint)
            .where(
                CallbackEndpoint.id == endpoint_id,
                CallbackEndpoint.caller_id == caller_id,
                CallbackEndpoint.deleted_at.is_(None),
            )
            .values(deleted_at=func.now())
            .returning(CallbackEndpoint.id)
        )
        if deleted.scalar_one_or_none() is None:
            return False
        await self.session.execute(
            update(CallbackDelivery)
            .where(CallbackDelivery.endpoint_id == endpoint_id, CallbackDelivery.state == DeliveryState.PENDING.value)
            .values(
                state=DeliveryState.CANCELLED.value,
                last_error="the endpoint was removed",
                finished_at=func.now(),
                updated_at=func.now(),
            )
        )
        return True

    # ----- the outbox ---------------------------------------------------------------------------

    async def add_deliveries(self, rows: list[dict[str, Any]]) -> int:
        """Insert outbox rows; one per (video, event, URL) ever, so repeating an event adds nothing."""
        if not rows:
            return 0
        inserted = await self.session.execute(
            insert(CallbackDelivery)
            .values(rows)
            .on_conflict_do_nothing(index_elements=["video_id", "event_type", "url"])
            .returning(CallbackDelivery.id)
        )
        return len(inserted.all())

    async def claim_due(self, *, limit: int, lease_seconds: float) -> list[ClaimedDelivery]:
        due = (
            select(CallbackDelivery.id)
            .where(
                CallbackDelivery.state == DeliveryState.PENDING.value, CallbackDelivery.next_attempt_at <= func.now()
            )
            .order_by(CallbackDelivery.next_attempt_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        rows = await self.session.execute(
            update(CallbackDelivery)
            .where(CallbackDelivery.id.in_(due))
            .values(
                attempts=CallbackDelivery.attempts + 1,
                next_attempt_at=func.now() + timedelta(seconds=lease_seconds),
                updated_at=func.now(),
            )
            .returning(
                CallbackDelivery.id,
                CallbackDelivery.webhook_id,
                CallbackDelivery.event_type,
                CallbackDelivery.caller_id,
                CallbackDelivery.url,
                CallbackDelivery.payload,
                CallbackDelivery.attempts,
            )
        )
        return [ClaimedDelivery(*row) for row in rows.all()]

    async def record_attempt(
        self,
        delivery: ClaimedDelivery,
        *,
        outcome: str,
        status_code: int | None,
        error: str | None,
        address: str | None,
        duration_ms: int | None,
        state: DeliveryState,
        retry_in_seconds: float | None,
    ) -> bool:
        """Log the attempt and move the row on, if it is still ours (at the claimed attempt and pending)."""
        values: dict[str, Any] = {
            "state": state.value,
            "last_status": status_code,
            "last_error": error,
            "updated_at": func.now(),
        }
        if state is DeliveryState.PENDING:
            values["next_attempt_at"] = func.now() + timedelta(seconds=retry_in_seconds or 0.0)
        else:
            values["finished_at"] = func.now()
        moved = await self.session.execute(
            update(CallbackDelivery)
            .where(
                CallbackDelivery.id == delivery.id,
                CallbackDelivery.attempts == delivery.attempts,
                CallbackDelivery.state == DeliveryState.PENDING.value,
            )
            .values(**values)
            .returning(CallbackDelivery.id)
        )
        if moved.scalar_one_or_none() is None:
            return False
        self.session.add(
            CallbackAttempt(
                delivery_id=delivery.id,
                attempt=delivery.attempts,
                address=address,
                outcome=outcome,
                status_code=status_code,
                error=error,
                duration_ms=duration_ms,
            )
        )
        await self.session.flush()
        return True

    async def retry_now(self, delivery_id: int) -> bool:
        """Make a failed delivery, or a pending one waiting for its next attempt, due now (one more attempt).

        A pending delivery with an attempt in flight (claimed, not yet logged) is left alone, so the operator
        never causes two concurrent sends; delivered and cancelled ones are final.
        """
        logged = (
            select(func.count())
            .select_from(CallbackAttempt)
            .where(CallbackAttempt.delivery_id == CallbackDelivery.id)
            .scalar_subquery()
        )
        moved = await self.session.execute(
            update(CallbackDelivery)
            .where(
                CallbackDelivery.id == delivery_id,
                (CallbackDelivery.state == DeliveryState.FAILED.value)
                | ((CallbackDelivery.state == DeliveryState.PENDING.value) & (CallbackDelivery.attempts == logged)),
            )
            .values(
                state=DeliveryState.PENDING.value, next_attempt_at=func.now(), finished_at=None, updated_at=func.now()
            )
            .returning(CallbackDelivery.id)
        )
        return moved.scalar_one_or_none() is not None

    # ----- the delivery log ---------------------------------------------------------------------

    async def deliveries_of(
        self, caller_id: uuid.UUID, *, limit: int, after: str | None, video_id: str | None
    ) -> Sequence[CallbackDelivery]:
        """The caller's deliveries, newest first; `after` is a delivery's webhook id (cursor)."""
        statement = select(CallbackDelivery).where(CallbackDelivery.caller_id == caller_id)
        if video_id is not None:
            statement = statement.where(CallbackDelivery.video_id == video_id)
        if after is not None:
            cursor = select(CallbackDelivery.id).where(
                CallbackDelivery.webhook_id == after, CallbackDelivery.caller_id == caller_id
            )
            statement = statement.where(CallbackDelivery.id < cursor.scalar_subquery())
        rows = await self.session.execute(statement.order_by(CallbackDelivery.id.desc()).limit(limit))
        return rows.scalars().all()

    async def attempts_of(self, delivery_ids: list[int]) -> Sequence[CallbackAttempt]:
        if not delivery_ids:
            return []
        rows = await self.session.execute(
            select(CallbackAttempt)
            .where(CallbackAttempt.delivery_id.in_(delivery_ids))
            .order_by(CallbackAttempt.delivery_id, CallbackAttempt.attempt, CallbackAttempt.id)
        )
        return rows.scalars().all()

    async def deliveries_of_video(self, video_id: str) -> Sequence[CallbackDelivery]:
        """Every delivery about one video, whoever's endpoint, oldest first (the console's timeline of a video)."""
        statement = select(CallbackDelivery).where(CallbackDelivery.video_id == video_id).order_by(CallbackDelivery.id)
        return (await self.session.execute(statement)).scalars().all()

    async def video_of_delivery(self, delivery_id: int) -> str | None:
        statement = select(CallbackDelivery.video_id).where(CallbackDelivery.id == delivery_id)
        return (await self.session.execute(statement)).scalar_one_or_none()
