"""The request-rate check is one SQL statement (app/limits/repository.py `COUNT_REQUEST`, run alone on the driver by
`count_request`): its decisions are `window.decide`'s, state for state, on the database's clock; and concurrent
requests never overshoot."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import asyncpg
import pytest
from pydantic import SecretStr
from sqlalchemy import text

from app.core.config import DatabaseSettings
from app.core.db import Database, run_without_transaction
from app.limits import window
from app.limits.repository import COUNT_REQUEST, LimitsRepository
from tests.support.factories import make_caller

# (minutes back the stored window started, current count, previous count, limit)
STATES = [
    (None, 0, 0, 1),  # a key never counted
    (0, 0, 0, 1),
    (0, 4, 0, 5),
    (0, 5, 0, 5),
    (0, 2, 9, 10),
    (0, 1, 30, 20),
    (1, 7, 3, 10),  # last minute's count becomes the weighted one
    (1, 30, 0, 20),
    (1, 12, 50, 12),
    (2, 100, 100, 1),  # older than a minute: nothing counts
    (5, 3, 3, 3),
]


@pytest.mark.parametrize(("minutes_back", "current", "previous", "limit"), STATES)
async def test_the_statement_decides_as_the_window_arithmetic(
    database: Database, minutes_back: int | None, current: int, previous: int, limit: int
) -> None:
    key_id = (await make_caller(database)).key_id
    # One transaction, so now() is one instant for the setup, the statement and the expectation.
    async with database.sessionmaker() as session:
        now = (await session.execute(text("SELECT now()"))).scalar_one()
        if minutes_back is not None:
            stored_start = window.minute_of(now) - timedelta(minutes=minutes_back)
            await session.execute(
                text(
                    "INSERT INTO key_request_windows (api_key_id, window_start, current_count, previous_count)"
                    " VALUES (:id, :start, :current, :previous)"
                ),
                {"id": key_id, "start": stored_start, "current": current, "previous": previous},
            )
            counts = window.counts_at(now=now, window_start=stored_start, current=current, previous=previous)
        else:
            counts = window.counts_at(now=now, window_start=now, current=0, previous=0)
        expected = window.decide(counts, limit=limit).allowed
        # The statement itself, in the setup's transaction (production runs it alone: `count_request`).
        params = {"api_key_id": key_id, "limit": limit + window.EPSILON, "window_seconds": window.WINDOW_SECONDS}
        admitted = (await session.execute(COUNT_REQUEST, params)).first() is not None
        assert admitted is expected
        stored = await LimitsRepository.from_session(session).read_window(key_id)
        assert stored is not None or not admitted
        if admitted and stored is not None:
            # Admitted: counted once, in the current minute's bucket.
            assert (stored.window_start, stored.current_count, stored.previous_count) == (
                window.minute_of(now),
                counts.current + 1,
                counts.previous,
            )
        elif stored is not None and minutes_back is not None:
            assert stored.current_count == current  # refused: nothing counted
        await session.rollback()


async def test_concurrent_requests_are_admitted_up_to_the_limit_exactly(database: Database) -> None:
    """As replicas would: each on its own connection, in autocommit, all at once."""
    key_id = (await make_caller(database)).key_id
    limit = 7

    async def one_request() -> bool:
        return await LimitsRepository.count_request(
            database, key_id, limit=limit, window_seconds=window.WINDOW_SECONDS, slack=window.EPSILON
        )

    verdicts = await asyncio.gather(*(one_request() for _ in range(25)))
    assert sum(verdicts) == limit


async def test_an_unknown_key_id_is_not_counted(database: Database) -> None:
    with pytest.raises(asyncpg.ForeignKeyViolationError):
        await LimitsRepository.count_request(
            database, uuid.uuid4(), limit=5, window_seconds=window.WINDOW_SECONDS, slack=window.EPSILON
        )


async def test_the_counter_relaxes_durability_for_its_own_commit_only(database_url: str) -> None:
    """`synchronous_commit` is off for the counter's transaction alone: the pooled connection's next
    transaction (any write the gateway must not lose) commits synchronously again."""
    single = Database.connect(DatabaseSettings(url=SecretStr(database_url), pool_size=1, max_overflow=0))
    try:
        key_id = (await make_caller(single)).key_id
        assert await LimitsRepository.count_request(
            single, key_id, limit=5, window_seconds=window.WINDOW_SECONDS, slack=window.EPSILON
        )
        # The pool's one connection, the counter's a moment ago.
        async with single.sessionmaker() as session:
            await run_without_transaction(session)
            assert (await session.execute(text("SHOW synchronous_commit"))).scalar_one() == "on"
        async with single.transaction() as session:
            assert (await session.execute(text("SHOW synchronous_commit"))).scalar_one() == "on"
    finally:
        await single.dispose()
