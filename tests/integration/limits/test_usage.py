"""`GET /v1/usage`: renders, seconds and cost per UTC day and model, failures and moderation apart."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import Database
from tests.support.factories import MadeCaller, make_caller, make_video
from tests.support.limits import GatewayFactory, assert_error

TODAY = datetime.now(UTC).date()
YESTERDAY = TODAY - timedelta(days=1)


async def video(
    session: AsyncSession,
    caller: MadeCaller,
    *,
    day: date,
    model: str,
    seconds: str,
    status: str,
    error_code: str | None = None,
    deleted: bool = False,
) -> None:
    """A render of `caller` made at 00:30 UTC on `day`, never sent upstream (usage reads our rows only)."""
    created = datetime.combine(day, time(0, 30), tzinfo=UTC)
    await make_video(
        session,
        caller=caller,
        upstream_id=None,
        model=model,
        seconds=seconds,
        prompt="seeded",
        status=status,
        error_code=error_code,
        created_at=created,
        deleted_at=created if deleted else None,
    )


@pytest.fixture
async def seeded(database: Database) -> MadeCaller:
    caller, stranger = await make_caller(database), await make_caller(database)
    async with database.sessionmaker.begin() as session:
        await video(session, caller, day=YESTERDAY, model="sora-2", seconds="4", status="completed")
        await video(session, caller, day=YESTERDAY, model="sora-2", seconds="4", status="completed")
        await video(
            session, caller, day=YESTERDAY, model="sora-2", seconds="8", status="failed", error_code="upstream_error"
        )
        await video(
            session,
            caller,
            day=YESTERDAY,
            model="sora-2",
            seconds="4",
            status="failed",
            error_code="moderation_blocked",
        )
        await video(session, caller, day=YESTERDAY, model="sora-2-pro", seconds="8", status="completed")
        await video(session, caller, day=TODAY, model="sora-2-pro", seconds="12", status="in_progress")
        # Upstream may have started it: charged until reconciled.
        await video(
            session,
            caller,
            day=TODAY,
            model="sora-2",
            seconds="4",
            status="failed",
            error_code="upstream_submission_unknown",
        )
        # Deleted after completing: the money was still spent.
        await video(session, caller, day=TODAY, model="sora-2", seconds="4", status="completed", deleted=True)
        # Outside the range asked for, and another caller's: not counted.
        await video(
            session, caller, day=YESTERDAY - timedelta(days=1), model="sora-2", seconds="12", status="completed"
        )
        await video(session, stranger, day=TODAY, model="sora-2", seconds="12", status="completed")
    return caller


def bucket(**values: object) -> dict[str, object]:
    counts = dict.fromkeys(
        ("renders", "completed", "in_progress", "failed", "moderation_blocked", "billed_renders", "seconds"), 0
    )
    return {"object": "usage.bucket", **counts, **values}


class TestUsage:
    async def test_numbers_by_day_and_model(self, limited_gateway: GatewayFactory, seeded: MadeCaller) -> None:
        async with limited_gateway() as gateway, gateway.client(seeded.key) as client:
            response = await client.get(
                "/v1/usage", params={"start_date": YESTERDAY.isoformat(), "end_date": TODAY.isoformat()}
            )
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["data"] == [
            bucket(
                date=YESTERDAY.isoformat(),
                model="sora-2",
                renders=4,
                completed=2,
                failed=1,
                moderation_blocked=1,
                billed_renders=2,
                seconds=8,
                cost_usd=0.8,
            ),
            bucket(
                date=YESTERDAY.isoformat(),
                model="sora-2-pro",
                renders=1,
                completed=1,
                billed_renders=1,
                seconds=8,
                cost_usd=2.4,
            ),
            bucket(
                date=TODAY.isoformat(),
                model="sora-2",
                renders=2,
                completed=1,
                failed=1,
                billed_renders=2,
                seconds=8,
                cost_usd=0.8,
            ),
            bucket(
                date=TODAY.isoformat(),
                model="sora-2-pro",
                renders=1,
                in_progress=1,
                billed_renders=1,
                seconds=12,
                cost_usd=3.6,
            ),
        ]
        totals = body["totals"]
        assert (totals["renders"], totals["failed"], totals["moderation_blocked"]) == (8, 2, 1)
        assert (totals["billed_renders"], totals["seconds"], totals["cost_usd"]) == (6, 36, 7.6)
        period = body["current_period"]
        assert (period["period"], period["budget_usd"], period["spent_usd"], period["remaining_usd"]) == (
            "day",
            100.0,
            4.4,
            95.6,
        )
        assert body["limits"] == {"requests_per_minute": 600, "max_concurrent_renders": 20, "active_renders": 1}

    async def test_the_default_range_is_the_last_30_days(
        self, limited_gateway: GatewayFactory, seeded: MadeCaller
    ) -> None:
        async with limited_gateway() as gateway, gateway.client(seeded.key) as client:
            body = (await client.get("/v1/usage")).json()
        assert (body["start_date"], body["end_date"]) == ((TODAY - timedelta(days=29)).isoformat(), TODAY.isoformat())
        assert body["totals"]["renders"] == 9

    async def test_a_reversed_range_is_400_and_no_key_is_401(
        self, limited_gateway: GatewayFactory, seeded: MadeCaller
    ) -> None:
        async with limited_gateway() as gateway, gateway.client(seeded.key) as client, gateway.client(None) as anon:
            params = {"start_date": TODAY.isoformat(), "end_date": YESTERDAY.isoformat()}
            assert_error(await client.get("/v1/usage", params=params), 400, "invalid_value")
            assert_error(await anon.get("/v1/usage"), 401, "missing_api_key")

    async def test_a_day_at_the_edge_of_the_calendar_is_400_not_500(
        self, limited_gateway: GatewayFactory, seeded: MadeCaller
    ) -> None:
        """The day after 9999-12-31 and the default start 29 days before 0001-01-01 are no dates at all."""
        async with limited_gateway() as gateway, gateway.client(seeded.key) as client:
            for params, param in (
                ({"end_date": "9999-12-31"}, "end_date"),
                ({"end_date": "0001-01-01"}, "end_date"),
                ({"start_date": "0001-01-01", "end_date": "0001-01-31"}, "start_date"),
            ):
                response = await client.get("/v1/usage", params=params)
                assert_error(response, 400, "invalid_value")
                assert response.json()["error"]["param"] == param
            edge = await client.get("/v1/usage", params={"start_date": "9998-12-01", "end_date": "9998-12-31"})
            assert edge.status_code == 200, edge.text
            assert edge.json()["totals"]["renders"] == 0
