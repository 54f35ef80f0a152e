"""Every query of the `webhook_events` table (its one repository, decision 008): record a delivery once, match
orphans to the videos that now claim them, and the stored deliveries the console and the CLI list.

The video an event is about is found through `app.videos.repository`.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, tuple_, update
from sqlalchemy.dialects.postgresql import insert

from app.core.repository import Repository
from app.models import EventOutcome, Video, WebhookEvent


@dataclass(frozen=True)
class EventCursor:
    received_at: datetime
    id: uuid.UUID


class WebhookRepository(Repository):
    async def recent(self, *, limit: int, outcome: str | None = None) -> Sequence[WebhookEvent]:
        """The latest stored deliveries, newest first, optionally of one outcome."""
        statement = select(WebhookEvent).order_by(WebhookEvent.received_at.desc()).limit(limit)
        if outcome is not None:
            statement = statement.where(WebhookEvent.outcome == outcome)
        return (await self.session.execute(statement)).scalars().all()

    async def record(
        self,
        *,
        webhook_id: str,
        event_id: str | None,
        event_type: str,
        upstream_profile: str,
        upstream_video_id: str | None,
        video_id: str | None,
        outcome: EventOutcome,
        body: str,
    ) -> bool:
        """Insert the delivery; False when one with the same `webhook_id` or `event_id` exists.

        No conflict target, so both unique indexes count. A concurrent copy of the same delivery waits on the
        first one's transaction and then does nothing: it never raises, and never inserts a second row.
        """
        statement = (
            insert(WebhookEvent)
            .values(
                webhook_id=webhook_id,
                event_id=event_id,
                event_type=event_type,
                upstream_profile=upstream_profile,
                upstream_video_id=upstream_video_id,
                video_id=video_id,
                outcome=outcome.value,
                body=body,
            )
            .on_conflict_do_nothing()
            .returning(WebhookEvent.id)
        )
        return (await self.session.execute(statement)).scalar_one_or_none() is not None

    async def match_orphan_events(self, *, limit: int) -> set[str]:
        """Mark webhook events that arrived before their video was ours as matched; returns those videos' ids.

        A webhook can beat the commit of our create row (or come from another project); it is kept as an
        orphan and matched here once a live video with that upstream id exists. The `limit` counts matchable
        orphans only: orphans that will never match (another project's deliveries are kept for ever) must not
        fill every pass and starve the ones that can.
        """
        matchable = (
            select(WebhookEvent.id.label("event_id"), Video.id.label("video_id"))
            .join(
                Video,
                (Video.upstream_id == WebhookEvent.upstream_video_id)
                & (Video.upstream_profile == WebhookEvent.upstream_profile)
                & Video.deleted_at.is_(None),
            )
            .where(WebhookEvent.outcome == EventOutcome.ORPHAN.value)
            .limit(limit)
            .subquery()
        )
        # The pairs found above are the update's only join; the outcome is checked again because another pass may
        # have matched the row since.
        matched = (
            update(WebhookEvent)
            .where(WebhookEvent.id == matchable.c.event_id, WebhookEvent.outcome == EventOutcome.ORPHAN.value)
            .values(outcome=EventOutcome.MATCHED.value, video_id=matchable.c.video_id)
            .returning(matchable.c.video_id)
        )
        return set((await self.session.execute(matched)).scalars().all())

    async def referenced_upstream_ids(self, *, profile: str, video_ids: Sequence[str]) -> dict[str, set[str]]:
        """Video id → the upstream ids that orphan deliveries whose callback URL named that video carried (a
        create cut off before upstream answered, app/upstream/reference.py)."""
        statement = select(WebhookEvent.video_id, WebhookEvent.upstream_video_id).where(
            WebhookEvent.outcome == EventOutcome.ORPHAN.value,
            WebhookEvent.upstream_profile == profile,
            WebhookEvent.video_id.in_(video_ids),
            WebhookEvent.upstream_video_id.is_not(None),
        )
        found: dict[str, set[str]] = {}
        for video_id, upstream_id in (await self.session.execute(statement)).all():
            if video_id is not None and upstream_id is not None:  # both are, by the WHERE
                found.setdefault(video_id, set()).add(upstream_id)
        return found

    async def events_of(self, video_id: str) -> Sequence[WebhookEvent]:
        """The deliveries about one video, oldest first (the console's timeline of a video)."""
        statement = select(WebhookEvent).where(WebhookEvent.video_id == video_id).order_by(WebhookEvent.received_at)
        return (await self.session.execute(statement)).scalars().all()

    async def page(self, *, cursor: EventCursor | None, limit: int) -> Sequence[WebhookEvent]:
        """Newest first, after `cursor` (the last row of the previous page): keyset-paged on (received_at, id),
        never OFFSET (an index of migration 0009 serves it)."""
        statement = select(WebhookEvent)
        if cursor is not None:
            statement = statement.where(
                tuple_(WebhookEvent.received_at, WebhookEvent.id) < tuple_(cursor.received_at, cursor.id)
            )
        statement = statement.order_by(WebhookEvent.received_at.desc(), WebhookEvent.id.desc()).limit(limit)
        return (await self.session.execute(statement)).scalars().all()
