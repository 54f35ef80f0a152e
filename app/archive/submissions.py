"""Creates cut off before upstream answered: found again in upstream's list of renders, or settled as unknown.

The API commits a video's row before it calls upstream, so a process killed during that call leaves a row
without an upstream id while upstream may well be rendering (and billing) it. Neither OpenAI's contract nor
the providers take a client reference or an idempotency key on create, so the only way back is upstream's
list: a render of the same model (as sent: a fallback's `upstream_model` when one rendered it), prompt, seconds
and size (and remix source), created within the window the call could have reached upstream, and linked to no
other video of ours. Exactly one such render, wanted
by no other cut-off row, is adopted (the row gets its upstream id and state, and from there on is a video
like any other); none, or more than one, and the row is failed `upstream_submission_unknown` as before,
because handing a caller someone else's identical render is worse than telling them the truth.

Before the list, the reference: an upstream that calls back (Seedance, fal, Replicate) was given our video id
in the callback URL (app/upstream/reference.py), and a callback for a render no video of ours has is kept as an
orphan naming the video its reference names. Such a render is adopted by that reference alone, once upstream
confirms with our key that it exists and no other video of ours claims it: the reference is the upstream's own
statement that this render came from that create, which no listing (Ark's lists no prompt, fal has none) can
match. A video whose reference names two renders is left to the list, as if it had none.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive.service import record_upstream_state, settle_unknown_submission
from app.core.config import Settings
from app.core.errors import GatewayError
from app.models import Video, VideoOrigin
from app.upstream.router import UnknownProfile, UpstreamRouter
from app.upstream.schemas import UpstreamVideo
from app.videos.repository import VideoRepository
from app.webhooks.repository import WebhookRepository

logger = logging.getLogger(__name__)

# Upstream's clock against ours: a render may carry a `created_at` this much before or after our row's.
CLOCK_SKEW_SECONDS = 120


@dataclass(frozen=True)
class SubmissionOutcome:
    adopted: int = 0
    settled: int = 0


# What a cut-off call can be found again as: a create or a remix (upstream names a remix's source).
ADOPTABLE_ORIGINS = frozenset({VideoOrigin.CREATE.value, VideoOrigin.REMIX.value})


def _match_key(video: Video, source_upstream_id: str | None) -> tuple[str, str, str, str, str | None]:
    # Upstream lists the render under the model id it was sent (a fallback's, when one rendered it).
    return (video.provider_model, video.prompt, video.seconds, video.size, source_upstream_id)


def _upstream_key(render: UpstreamVideo) -> tuple[str, str, str, str, str | None]:
    return (render.model, render.prompt or "", render.seconds, render.size, render.remixed_from_video_id)


def _sent_at(video: Video) -> datetime:
    """When the create was sent: a video that waited for capacity (admission control) was sent after it was
    created, possibly long after."""
    return video.submitted_at or video.created_at


async def resolve_cut_off_creates(
    session: AsyncSession,
    *,
    videos: Sequence[Video],
    upstreams: UpstreamRouter,
    settings: Settings,
) -> SubmissionOutcome:
    """Adopt each cut-off create upstream has exactly one unclaimed match for; settle the others as unknown."""
    repository = VideoRepository.from_session(session)
    adopted = settled = 0
    by_profile: dict[str, list[Video]] = {}
    for video in videos:
        if video.origin not in ADOPTABLE_ORIGINS:
            # An edit or extension upstream lists with nothing that ties it to its source (the contract names
            # only a remix's): a match by prompt and length could be another render. Settled as unknown.
            await settle_unknown_submission(session, video=video, settings=settings)
            settled += 1
            continue
        by_profile.setdefault(video.upstream_profile, []).append(video)
    for profile, rows in by_profile.items():
        referenced = await _referenced(session, repository, rows, upstreams=upstreams)
        listed = [video for video in rows if video.id not in referenced]
        matches = {
            **referenced,
            **(
                await _matches(repository, listed, upstreams=upstreams, settings=settings, taken=referenced)
                if listed
                else {}
            ),
        }
        for video in rows:
            render = matches.get(video.id)
            if render is None:
                await settle_unknown_submission(session, video=video, settings=settings)
                settled += 1
                continue
            video.upstream_id = render.id
            await record_upstream_state(session, video=video, upstream=render, settings=settings)
            adopted += 1
            logger.warning(
                "create of %s was cut off before upstream answered; found upstream as %s (%s) and adopted",
                video.id,
                render.id,
                profile,
            )
    return SubmissionOutcome(adopted=adopted, settled=settled)


async def _referenced(
    session: AsyncSession, repository: VideoRepository, rows: list[Video], *, upstreams: UpstreamRouter
) -> dict[str, UpstreamVideo]:
    """Our video id → the render an orphan callback carrying its reference names, as upstream reads it now."""
    profile = rows[0].upstream_profile
    found = await WebhookRepository.from_session(session).referenced_upstream_ids(
        profile=profile, video_ids=[video.id for video in rows]
    )
    if not found:
        return {}
    try:
        adapter = upstreams.adapter(profile)
    except UnknownProfile:
        return {}
    named = {
        video.id: adapter.called_back_id(next(iter(found[video.id])), model=video.provider_model)
        for video in rows
        if len(found.get(video.id, ())) == 1
    }
    claimed = await repository.claimed_upstream_ids(profile=profile, upstream_ids=list(named.values()))
    adopted: dict[str, UpstreamVideo] = {}
    for video_id, upstream_id in named.items():
        if upstream_id in claimed:
            continue
        try:
            adopted[video_id] = await adapter.retrieve_video(upstream_id)
        except GatewayError as exc:
            # Not confirmed is not adopted: the list may still find it, else it is settled as unknown.
            logger.warning("could not read %s (%s), named by %s's reference: %s", upstream_id, profile, video_id, exc)
    return adopted


async def _matches(
    repository: VideoRepository,
    rows: list[Video],
    *,
    upstreams: UpstreamRouter,
    settings: Settings,
    taken: dict[str, UpstreamVideo],
) -> dict[str, UpstreamVideo]:
    """Our video id → the one upstream render it can only be; rows with no unambiguous match are left out.
    `taken` are renders already adopted by reference in this pass."""
    profile = rows[0].upstream_profile
    since = int(min(_sent_at(video) for video in rows).timestamp()) - CLOCK_SKEW_SECONDS
    try:
        recent = await upstreams.adapter(profile).recent_videos(created_since=since)
    except (GatewayError, UnknownProfile) as exc:
        # Not knowing is not a match: the rows are settled as unknown, as they were before adoption existed.
        logger.warning("could not list upstream %s to find cut-off creates: %s", profile, exc)
        return {}
    if not recent:
        return {}
    claimed = await repository.claimed_upstream_ids(profile=profile, upstream_ids=[render.id for render in recent])
    claimed |= {render.id for render in taken.values()}
    unclaimed = [render for render in recent if render.id not in claimed]
    # A create still in flight after `unsubmitted_after_seconds` is not a thing (it is set far above the
    # upstream timeout), so upstream cannot have started the render later than that.
    reach = timedelta(seconds=settings.worker.unsubmitted_after_seconds + CLOCK_SKEW_SECONDS)
    candidates: dict[str, list[UpstreamVideo]] = {}
    for video in rows:
        source_upstream_id = None
        if video.remixed_from is not None:
            source = await repository.get(video.remixed_from)
            source_upstream_id = source.upstream_id if source is not None else None
        key = _match_key(video, source_upstream_id)
        earliest = _sent_at(video).timestamp() - CLOCK_SKEW_SECONDS
        latest = (_sent_at(video) + reach).timestamp()
        candidates[video.id] = [
            render for render in unclaimed if _upstream_key(render) == key and earliest <= render.created_at <= latest
        ]
    wanted = Counter(render.id for found in candidates.values() for render in found)
    return {
        video_id: found[0] for video_id, found in candidates.items() if len(found) == 1 and wanted[found[0].id] == 1
    }
