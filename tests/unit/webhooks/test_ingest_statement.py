"""The receiver's one statement (`record_video_event` in app/archive/queries.sql, decision 009) queues its sync job
as `enqueue` does: the same columns and the same dedupe on active jobs, so the two cannot drift apart unseen.
(Its behaviour against Postgres: tests/integration/webhooks/test_one_statement_ingest.py.)
"""

from __future__ import annotations

import re

from app.archive.queue import queries

JOB_INSERT = re.compile(r"INSERT INTO archive_jobs \((?P<columns>[^)]*)\)", re.IGNORECASE)
ACTIVE_DEDUPE = re.compile(r"ON CONFLICT \(kind, video_id, [^\n]* DO NOTHING")


def _job_columns(sql: str) -> list[str]:
    match = JOB_INSERT.search(sql)
    assert match is not None
    return [column.strip() for column in match["columns"].split(",")]


def test_the_job_insert_has_enqueues_columns_and_the_request_id() -> None:
    assert _job_columns(queries()["record_video_event"]) == [*_job_columns(queries()["enqueue"]), "request_id"]


def test_the_job_insert_dedupes_on_active_jobs_as_enqueue_does() -> None:
    [enqueue_dedupe] = ACTIVE_DEDUPE.findall(queries()["enqueue"])
    assert ACTIVE_DEDUPE.findall(queries()["record_video_event"]) == [enqueue_dedupe]


def test_the_event_insert_names_no_conflict_target() -> None:
    """As `WebhookRepository.record`: both unique indexes (webhook id, event id) make a delivery a duplicate."""
    sql = queries()["record_video_event"]
    event_insert = sql[sql.index("INSERT INTO webhook_events") : sql.index("RETURNING outcome")]
    assert "ON CONFLICT DO NOTHING" in event_insert
