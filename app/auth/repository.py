"""Every query of the `callers` and `api_keys` tables (their one repository, decision 008): keys by lookup, the
admin API's listings, and the caller's stored limits (which the limits lock and read). Validity (revoked,
expired, disabled) is decided by the database's clock."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, or_, select, update

from app.core.repository import Repository
from app.models import ApiKey, Caller, KeyRequestWindow


@dataclass(frozen=True)
class KeyRow:
    """A key as administrators see it: never the digest or the lookup."""

    key: ApiKey
    caller_name: str
    last_used_at: datetime | None


@dataclass(frozen=True)
class CallerOverrides:
    """A caller's own limits as stored on its row; None: the deployment's default (app/limits)."""

    requests_per_minute: int | None
    max_concurrent_renders: int | None
    budget_usd_per_period: Decimal | None
    budget_period: str | None


class CallerRepository(Repository):
    async def get_key_by_lookup(self, lookup: str) -> tuple[ApiKey, Caller] | None:
        """The usable key with this lookup: not revoked, not expired, its caller not disabled."""
        statement = (
            select(ApiKey, Caller)
            .join(Caller, Caller.id == ApiKey.caller_id)
            .where(
                ApiKey.lookup == lookup,
                ApiKey.revoked_at.is_(None),
                or_(ApiKey.expires_at.is_(None), ApiKey.expires_at > func.now()),
                Caller.disabled_at.is_(None),
            )
        )
        row = (await self.session.execute(statement)).first()
        return (row[0], row[1]) if row else None

    async def get_key_by_lookup_any_state(self, lookup: str) -> ApiKey | None:
        return (await self.session.execute(select(ApiKey).where(ApiKey.lookup == lookup))).scalar_one_or_none()

    async def get_caller_by_name(self, name: str) -> Caller | None:
        return (await self.session.execute(select(Caller).where(Caller.name == name))).scalar_one_or_none()

    async def get_caller(self, caller_id: uuid.UUID) -> Caller | None:
        return await self.session.get(Caller, caller_id)

    async def list_callers(self) -> Sequence[Caller]:
        return (await self.session.execute(select(Caller).order_by(Caller.created_at, Caller.name))).scalars().all()

    async def get_key(self, key_id: uuid.UUID) -> ApiKey | None:
        return await self.session.get(ApiKey, key_id)

    async def list_keys(self, *, caller_id: uuid.UUID | None = None) -> list[KeyRow]:
        statement = (
            select(ApiKey, Caller.name, KeyRequestWindow.last_request_at)
            .join(Caller, Caller.id == ApiKey.caller_id)
            .outerjoin(KeyRequestWindow, KeyRequestWindow.api_key_id == ApiKey.id)
            .order_by(Caller.name, ApiKey.created_at)
        )
        if caller_id is not None:
            statement = statement.where(ApiKey.caller_id == caller_id)
        rows = (await self.session.execute(statement)).all()
        return [KeyRow(key=row[0], caller_name=row[1], last_used_at=row[2]) for row in rows]

    async def revoke_key(self, key_id: uuid.UUID) -> ApiKey | None:
        """Revoke (idempotently: a revoked key keeps its first revocation time) and return the key."""
        await self.session.execute(
            update(ApiKey)
            .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
            .values(revoked_at=func.now())
            .execution_options(synchronize_session=False)
        )
        key = await self.session.get(ApiKey, key_id, populate_existing=True)
        return key

    async def refresh(self, instance: Caller | ApiKey) -> None:
        await self.session.flush()
        await self.session.refresh(instance)

    async def caller_names(self, caller_ids: set[uuid.UUID]) -> dict[uuid.UUID, str]:
        if not caller_ids:
            return {}
        rows = await self.session.execute(select(Caller.id, Caller.name).where(Caller.id.in_(caller_ids)))
        return {row[0]: row[1] for row in rows.all()}

    # ----- the caller's stored limits (app/limits) ----------------------------------------------

    async def lock_caller(self, caller_id: uuid.UUID) -> CallerOverrides:
        """The caller's limits as now stored, with its row locked until this transaction ends.

        Every admission of a render takes this lock first, so two concurrent creates cannot both read the
        same spend and both pass. `FOR NO KEY UPDATE` does not block foreign-key checks of other inserts.
        """
        statement = (
            select(
                Caller.requests_per_minute,
                Caller.max_concurrent_renders,
                Caller.budget_usd_per_period,
                Caller.budget_period,
            )
            .where(Caller.id == caller_id)
            .with_for_update(key_share=True)
        )
        row = (await self.session.execute(statement)).one()
        return CallerOverrides(
            requests_per_minute=row[0],
            max_concurrent_renders=row[1],
            budget_usd_per_period=row[2],
            budget_period=row[3],
        )

    async def caller_overrides(self, caller_id: uuid.UUID) -> CallerOverrides | None:
        caller = await self.session.get(Caller, caller_id, populate_existing=True)
        if caller is None:
            return None
        return CallerOverrides(
            requests_per_minute=caller.requests_per_minute,
            max_concurrent_renders=caller.max_concurrent_renders,
            budget_usd_per_period=caller.budget_usd_per_period,
            budget_period=caller.budget_period,
        )

    async def set_overrides(self, caller_id: uuid.UUID, values: dict[str, object]) -> None:
        if values:
            await self.session.execute(
                update(Caller)
                .where(Caller.id == caller_id)
                .values(**values)
                .execution_options(synchronize_session=False)
            )
