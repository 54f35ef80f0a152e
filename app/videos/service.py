"""The facade's behaviour: create, retrieve, list, delete, content, remix, edit and extend for one caller.

An edit or extension is a video of its own, made like a remix: from one of the caller's completed videos (on
the profile that rendered it, with its model) or from an uploaded MP4 (on the profile of the model named, the
default one unless given); its length is the source's, plus the new segment for an extension, which alone is
billed. A paid call (create, remix, edit, extension) is made only after the video row is committed, so a crash
between the call and our bookkeeping leaves a row to reconcile rather than a render nobody knows about; and no
transaction is held open while upstream thinks. A create on a profile with provider limits (admission control,
app/archive/admission.py) makes no call here: it is accepted as `queued` and the worker sends it when there is
room. A create goes to the first of its model's candidates (its own profile, then `VG_FALLBACKS`) that can
take it now; what moves it on is app/videos/fallbacks.py's policy.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy.ext.asyncio import AsyncSession

from app.archive import admission
from app.archive import service as archive_service
from app.archive.repository import ArchiveRepository
from app.archive.storage import READ_CHUNK_BYTES, ArchiveStorage, ObjectNotFound, ObjectStream, StorageError
from app.callbacks import service as callbacks_service
from app.core import metrics
from app.core.config import Settings
from app.core.db import Database, run_without_transaction
from app.core.errors import GatewayError, InvalidRequest, ResourceNotFound
from app.limits import service as limits_service
from app.models import Asset, AssetState, Caller, Variant, Video, VideoOrigin, VideoStatus
from app.upstream.capabilities import check_edit, check_extend
from app.upstream.client import render_may_have_started
from app.upstream.ids import caller_facing
from app.upstream.image_url import ImageFetcher
from app.upstream.router import Candidate, UpstreamRouter
from app.upstream.schemas import CreateVideoCommand, EditCommand, ExtendCommand, SourceVideo, UpstreamVideo
from app.videos import fallbacks
from app.videos.fallbacks import Skipped
from app.videos.inputs import CreateRequest, DerivationRequest, RemixCommand, check_image
from app.videos.ranges import RangeRequest, resolve
from app.videos.refresh import RefreshGate
from app.videos.repository import VideoRepository, VideoView
from app.videos.schemas import DEFAULT_MODEL, AssetFields, AssetLink, VideoFields
from app.videos.uploads import whole_seconds

logger = logging.getLogger(__name__)

STREAM_CHUNK = 64 * 1024
# An archived copy that S3 cannot find (an operator's or a repair's window): the caller may come back later.
ASSET_UNAVAILABLE_RETRY_AFTER_SECONDS = 60
# Archive keys already reported at ERROR by this process; later requests for them log at WARNING.
MAX_REPORTED_KEYS = 1024


def new_video_id() -> str:
    return "video_" + secrets.token_hex(16)


def not_found(video_id: str) -> ResourceNotFound:
    # One answer for unknown, deleted and other callers' ids: existence is not disclosed.
    return ResourceNotFound(f"No video found with id '{video_id}'.", param="video_id", code="not_found")


class AssetUnavailable(GatewayError):
    """The archived copy should be in S3 and is not (or S3 failed): nothing to serve now, perhaps later."""

    status_code = 503
    type = "server_error"
    code = "asset_unavailable"


@dataclass
class ContentStream:
    """An open content response (upstream's or the archive's), handed to the route to stream; closes itself
    at the end. `content_range` is set for one byte range of an archived copy (a 206)."""

    content_type: str
    content_length: str | None
    _stack: AsyncExitStack
    _chunks: AsyncIterator[bytes]
    content_range: str | None = None
    # `bytes` for archived copies (ranges honoured), `none` for content streamed from upstream.
    accept_ranges: str = "none"

    @classmethod
    def archived(cls, stream: ObjectStream, *, content_type: str, chunk_size: int = READ_CHUNK_BYTES) -> ContentStream:
        """An archived object's bytes, read ahead (app/archive/readahead.py); the object closes with the stream."""
        stack = AsyncExitStack()
        stack.push_async_callback(stream.aclose)
        return cls(
            content_type=content_type,
            content_length=str(stream.content_length),
            _stack=stack,
            _chunks=stream.iter_chunks(chunk_size),
            content_range=stream.content_range,
            accept_ranges="bytes",
        )

    async def iterate(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._chunks:
                yield chunk
        finally:
            await self._stack.aclose()


@contextlib.contextmanager
def _in_callers_terms(source: Video | None) -> Iterator[None]:
    """A capability refusal asked under the provider's id for the model (a fallback's) is told under the
    caller's."""
    try:
        yield
    except InvalidRequest as exc:
        if source is None or source.upstream_model is None:
            raise
        message = exc.message.replace(f"'{source.upstream_model}'", f"'{source.model}'")
        raise InvalidRequest(message, param=exc.param, code=exc.code) from None


class VideoService:
    """Stateless apart from the refresh gate; one instance per app."""

    def __init__(self, *, settings: Settings, upstreams: UpstreamRouter, storage: ArchiveStorage) -> None:
        self._settings = settings
        self._upstreams = upstreams
        self._storage = storage
        self._worker_settings = settings.worker
        refresh_interval = settings.api.refresh_min_interval_seconds
        self._refresh_interval = timedelta(seconds=refresh_interval)
        self._gate = RefreshGate(min_interval=refresh_interval)
        self.images = ImageFetcher(settings.api)
        self._reported_missing: set[str] = set()

    async def create(self, session: AsyncSession, *, caller: Caller, request: CreateRequest) -> Video:
        command = request.command
        # A model no profile serves, and what no candidate of the model can render, are refused before anything
        # is charged, stored or sent (with the first candidate's 400: the model's own profile's).
        self._upstreams.check_model(command.model)
        able = fallbacks.able_candidates(self._upstreams.candidates(command.model), command)
        if request.callback_url is not None:
            callbacks_service.validate_callback_url(request.callback_url, self._settings.callbacks)
        if command.image_url is not None:
            # Fetched here, through the destination guard, never by upstream (app/upstream/image_url.py); the
            # bytes are then judged like an upload, size against each candidate's model included.
            max_bytes = self._settings.api.max_image_bytes
            image = check_image(await self.images.fetch(command.image_url, max_bytes=max_bytes), max_bytes=max_bytes)
            command = dataclasses.replace(command, image=image, image_url=None)
            with_image = fallbacks.able_candidates(able.candidates, command)
            able = fallbacks.Able(with_image.candidates, [*able.skipped, *with_image.skipped])
        # Once, for the model the caller asked for, whichever profile renders it.
        await limits_service.admit_render(
            session, caller=caller, model=command.model, seconds=command.seconds, settings=self._settings.limits
        )
        video = Video(
            callback_url=request.callback_url,
            caller_metadata=request.metadata,
            id=new_video_id(),
            caller_id=caller.id,
            model=command.model,
            size=command.size,
            seconds=command.seconds,
            prompt=command.prompt,
            status=VideoStatus.QUEUED.value,
            progress=0,
        )
        return await self._place(session, video, command, able.candidates, skipped=able.skipped)

    async def remix(self, session: AsyncSession, *, caller: Caller, video_id: str, command: RemixCommand) -> Video:
        source = await self._owned(session, caller=caller, video_id=video_id)
        with _in_callers_terms(source):
            self._upstreams.adapter(source.upstream_profile).check_remix(source.provider_model)
        await limits_service.admit_render(
            session, caller=caller, model=source.model, seconds=source.seconds, settings=self._settings.limits
        )
        if source.upstream_id is None or source.status is not VideoStatus.COMPLETED:
            raise InvalidRequest(
                f"Video '{video_id}' can be remixed only once it has completed.",
                param="video_id",
                code="invalid_video_state",
            )
        upstream_id = source.upstream_id
        adapter = self._upstreams.adapter(source.upstream_profile)

        async def remix_upstream() -> UpstreamVideo:
            with caller_facing(upstream_id=upstream_id, video_id=source.id):
                return await adapter.remix_video(upstream_id, prompt=command.prompt)

        video = Video(
            id=new_video_id(),
            caller_id=caller.id,
            model=source.model,
            size=source.size,
            seconds=source.seconds,
            prompt=command.prompt,
            status=VideoStatus.QUEUED.value,
            progress=0,
            remixed_from=source.id,
            origin=VideoOrigin.REMIX.value,
            # Where the source rendered, under the provider's own name for the model.
            upstream_profile=source.upstream_profile,
            upstream_model=source.upstream_model,
            callback_url=source.callback_url,
            caller_metadata=source.caller_metadata,
        )
        return await self._submit(session, video, remix_upstream)

    async def derive(self, session: AsyncSession, *, caller: Caller, request: DerivationRequest) -> Video:
        """An edit or an extension (`request.origin`): a new video rendered from a source, sent at once."""
        source_video: Video | None = None
        if request.source.video_id is not None:
            source_video = await self._derivable(session, caller=caller, request=request)
            assert source_video.upstream_id is not None, "checked by _derivable"
            model, profile = source_video.model, source_video.upstream_profile
            provider_model = source_video.provider_model
            source = SourceVideo(
                upstream_id=source_video.upstream_id, size=source_video.size, seconds=source_video.seconds
            )
        else:
            assert request.source.upload is not None, "a reference is an id or an upload"
            upload = request.source.upload
            model = provider_model = request.model or DEFAULT_MODEL
            self._upstreams.check_model(model)
            profile = self._upstreams.profile_for_model(model)
            source = SourceVideo(upload=upload, size=f"{upload.width}x{upload.height}", seconds=whole_seconds(upload))
        adapter = self._upstreams.adapter(profile)
        extension = request.origin is VideoOrigin.EXTENSION
        with _in_callers_terms(source_video):
            capabilities = adapter.capabilities(provider_model)
            if extension:
                assert request.seconds is not None, "an extension's parser requires seconds"
                check_extend(provider_model, capabilities, seconds=request.seconds, source=source)
            else:
                check_edit(provider_model, capabilities, source)
        # An extension renders only its new segment and is billed for that; its length is the stitched total.
        billed = int(request.seconds) if extension and request.seconds is not None else int(source.seconds)
        if request.callback_url is not None:
            callbacks_service.validate_callback_url(request.callback_url, self._settings.callbacks)
        await limits_service.admit_render(
            session, caller=caller, model=model, seconds=str(billed), settings=self._settings.limits
        )
        video = Video(
            id=new_video_id(),
            caller_id=caller.id,
            model=model,
            size=source.size,
            seconds=str(int(source.seconds) + billed) if extension else source.seconds,
            billed_seconds=billed if extension else None,
            prompt=request.prompt,
            status=VideoStatus.QUEUED.value,
            progress=0,
            origin=request.origin.value,
            remixed_from=source_video.id if source_video is not None else None,
            upstream_profile=profile,
            upstream_model=source_video.upstream_model if source_video is not None else None,
            # As a remix: the source's callback and metadata unless the request names its own.
            callback_url=request.callback_url or (source_video.callback_url if source_video else None),
            caller_metadata=request.metadata or (source_video.caller_metadata if source_video else None),
        )

        async def derive_upstream() -> UpstreamVideo:
            facing = (
                caller_facing(upstream_id=source.upstream_id, video_id=source_video.id)
                if source_video is not None and source.upstream_id is not None
                else contextlib.nullcontext()
            )
            with facing:
                if extension:
                    assert request.seconds is not None
                    return await adapter.extend_video(
                        ExtendCommand(
                            prompt=request.prompt, model=provider_model, seconds=request.seconds, source=source
                        )
                    )
                return await adapter.edit_video(EditCommand(prompt=request.prompt, model=provider_model, source=source))

        return await self._submit(session, video, derive_upstream)

    async def _derivable(self, session: AsyncSession, *, caller: Caller, request: DerivationRequest) -> Video:
        """The referenced video if it is the caller's (else the 404 of an unknown id) and completed (else 400)."""
        video_id = request.source.video_id
        assert video_id is not None
        video = await VideoRepository.from_session(session).get_owned(video_id, caller_id=caller.id)
        if video is None:
            raise ResourceNotFound(f"No video found with id '{video_id}'.", param="video.id", code="not_found")
        if video.upstream_id is None or video.status is not VideoStatus.COMPLETED:
            action = "extended" if request.origin is VideoOrigin.EXTENSION else "edited"
            raise InvalidRequest(
                f"Video '{video_id}' can be {action} only once it has completed (status: {video.status}).",
                param="video.id",
                code="video_not_ready",
            )
        return video

    async def retrieve(
        self, database: Database, *, caller: Caller, video_id: str
    ) -> tuple[VideoFields, Sequence[AssetFields]]:
        """The video, refreshed from upstream if due, with its archive state per variant.

        One statement alone on the driver (decision 013): no session, no transaction. Only a video due a refresh
        opens a session: read again as a model in autocommit, the upstream call made with no transaction open,
        and what it applies written in one transaction.
        """
        found = await VideoRepository.read_owned(database, video_id, caller_id=caller.id)
        if found is None:
            raise not_found(video_id)
        if not self._refresh_due(found.video):
            return found.video, found.assets
        async with database.transaction() as session:
            await run_without_transaction(session)
            video = await self._owned(session, caller=caller, video_id=video_id)
            await session.commit()
            await self._refresh_if_due(session, video)
            return video, list(await ArchiveRepository.from_session(session).assets_of(video.id))

    async def list_page(
        self,
        database: Database,
        *,
        caller: Caller,
        after: str | None,
        limit: int,
        order: Literal["asc", "desc"],
    ) -> tuple[list[VideoView], bool]:
        """A page of the caller's videos and whether another follows: one statement alone on the driver (decision
        013), which also finds the cursor video `after` (a 404 naming `after` when it is not the caller's)."""
        # One extra row tells whether another page exists without a COUNT.
        rows = await VideoRepository.list_owned(
            database, caller_id=caller.id, after=after, limit=limit + 1, order=order
        )
        if rows is None:
            raise ResourceNotFound(f"No video found with id '{after}'.", param="after", code="not_found")
        return rows[:limit], len(rows) > limit

    async def delete(self, session: AsyncSession, *, caller: Caller, video_id: str) -> Video:
        video = await self._owned(session, caller=caller, video_id=video_id)
        if video.upstream_id is None:
            # Maybe waiting to be sent (admission control), or being sent: decided under the row lock the worker's
            # submit takes too, so it is either never sent, or sent and then deleted upstream by the worker.
            locked = await VideoRepository.from_session(session).lock(video.id)
            if locked is None:  # forgotten meanwhile: its create failed before anything started upstream
                raise not_found(video_id)
            video = locked
            if admission.is_waiting(video):
                # Never sent, so nothing upstream or archived to delete (and the lock is not held across S3).
                await admission.cancel_waiting(session, video=video, settings=self._settings)
                video.deleted_at = datetime.now(UTC)
                await session.flush()
                return video
        if video.upstream_id is not None:
            # Already gone upstream (expired or deleted there) is fine: ours goes too.
            with contextlib.suppress(ResourceNotFound), caller_facing(upstream_id=video.upstream_id, video_id=video.id):
                await self._upstreams.adapter(video.upstream_profile).delete_video(video.upstream_id)
        # The caller asked for it gone: the archived copies go too.
        await self._storage.delete_video(video.id)
        video.deleted_at = datetime.now(UTC)
        await session.flush()
        return video

    async def open_content(
        self,
        session: AsyncSession,
        *,
        caller: Caller,
        video_id: str,
        variant: Variant,
        byte_range: RangeRequest | None = None,
    ) -> ContentStream:
        """The variant's bytes: the archived copy when there is one (`byte_range` honoured), else upstream's
        (whole: `byte_range` is ignored there)."""
        video = await self._owned(session, caller=caller, video_id=video_id)
        archived = await ArchiveRepository.from_session(session).archived_asset(video.id, variant)
        if archived is not None and archived.s3_key is not None:
            # Our copy outlives upstream's one-hour window; serve it whenever we have it.
            try:
                return await self._open_archived(archived, video_id=video.id, variant=variant, byte_range=byte_range)
            except AssetUnavailable:
                # The integrity audit looks at this copy first thing: repaired, or marked lost, within a tick.
                await archive_service.request_audit(session, video_id=video.id, variant=variant)
                await session.commit()
                raise
        if await self._asset_state(session, video_id=video.id, variant=variant) == AssetState.LOST:
            raise ResourceNotFound(
                f"The archived {variant.value} of video '{video.id}' was lost, and upstream no longer has it; "
                "it cannot be served.",
                param="video_id",
                code="asset_lost",
            )
        await self._refresh_if_due(session, video)
        if video.status is not VideoStatus.COMPLETED or video.upstream_id is None:
            raise ResourceNotFound(
                f"Video '{video_id}' is not ready yet (status: {video.status}); content is available once "
                "it has completed.",
                param="video_id",
                code="video_not_ready",
            )
        stack = AsyncExitStack()
        try:
            with caller_facing(upstream_id=video.upstream_id, video_id=video.id):
                response = await stack.enter_async_context(
                    self._upstreams.adapter(video.upstream_profile).stream_content(
                        video.upstream_id, variant=variant.value
                    )
                )
        except BaseException:
            await stack.aclose()
            raise
        return ContentStream(
            content_type=variant.content_type,
            content_length=response.headers.get("content-length"),
            _stack=stack,
            _chunks=response.aiter_raw(STREAM_CHUNK),
        )

    async def asset_links(self, session: AsyncSession, *, caller: Caller, video_id: str) -> list[AssetLink]:
        """Presigned GET URLs for the caller's archived variants (none before archiving)."""
        video = await self._owned(session, caller=caller, video_id=video_id)
        ttl = self._settings.s3.presign_ttl_seconds
        expires_at = int(datetime.now(UTC).timestamp()) + ttl
        archived = [
            asset
            for asset in await ArchiveRepository.from_session(session).assets_of(video.id)
            if asset.state == AssetState.ARCHIVED.value and asset.s3_key is not None
        ]
        order = [variant.value for variant in Variant]
        return [
            AssetLink(
                variant=asset.variant,
                content_type=Variant(asset.variant).content_type,
                bytes=asset.bytes,
                sha256=asset.sha256,
                url=self._storage.presign_get(
                    str(asset.s3_key), ttl_seconds=ttl, content_type=Variant(asset.variant).content_type
                ),
                expires_at=expires_at,
            )
            for asset in sorted(archived, key=lambda asset: order.index(asset.variant))
        ]

    # ----- internals ----------------------------------------------------------------------------

    async def _open_archived(
        self, asset: Asset, *, video_id: str, variant: Variant, byte_range: RangeRequest | None
    ) -> ContentStream:
        key = str(asset.s3_key)
        # The size on record decides what a range selects (and a 416) before S3 is asked; without one, whole.
        span = resolve(byte_range, asset.bytes) if byte_range is not None and asset.bytes is not None else None
        try:
            stream = await self._storage.open_object(key, byte_range=span)
        except ObjectNotFound:
            self._report_missing(key, video_id=video_id, variant=variant)
            raise self._unavailable(video_id, variant) from None
        except StorageError as exc:
            logger.warning("archived %s of %s not readable from S3: %s", variant.value, video_id, exc)
            raise self._unavailable(video_id, variant) from None
        return ContentStream.archived(stream, content_type=variant.content_type)

    def _report_missing(self, key: str, *, video_id: str, variant: Variant) -> None:
        """ERROR once per copy and process (an operator must look); a player retrying only adds WARNINGs."""
        if key in self._reported_missing:
            logger.warning("archived %s of %s is still missing from S3 (%s)", variant.value, video_id, key)
            return
        if len(self._reported_missing) >= MAX_REPORTED_KEYS:
            self._reported_missing.clear()
        self._reported_missing.add(key)
        logger.error(
            "archived %s of %s is missing from S3 (%s): the asset row says archived; content answers 503",
            variant.value,
            video_id,
            key,
        )

    @staticmethod
    def _unavailable(video_id: str, variant: Variant) -> AssetUnavailable:
        # Our own words: neither the S3 key nor S3's message is the caller's business.
        return AssetUnavailable(
            f"The archived {variant.value} of video '{video_id}' is temporarily unavailable; retry later.",
            param="video_id",
            headers={"Retry-After": str(ASSET_UNAVAILABLE_RETRY_AFTER_SECONDS)},
        )

    @staticmethod
    async def _asset_state(session: AsyncSession, *, video_id: str, variant: Variant) -> AssetState | None:
        assets = await ArchiveRepository.from_session(session).assets_of(video_id)
        return next((asset.state for asset in assets if asset.variant == variant.value), None)

    async def _owned(self, session: AsyncSession, *, caller: Caller, video_id: str) -> Video:
        video = await VideoRepository.from_session(session).get_owned(video_id, caller_id=caller.id)
        if video is None:
            raise not_found(video_id)
        return video

    async def _place(
        self,
        session: AsyncSession,
        video: Video,
        command: CreateVideoCommand,
        candidates: list[Candidate],
        *,
        skipped: list[Skipped],
    ) -> Video:
        """Send (or, under admission control, queue) the create at the first candidate that can take it now.

        A candidate paused by its circuit breaker or a 429 is passed over without a call; one that refuses in a
        way that proves nothing started (app/videos/fallbacks.py) is passed over after it. Anything else ends
        here, as without fallbacks. When every candidate was passed over, the caller gets the first one's error.
        """
        first_error: GatewayError | None = None
        stored = False  # the row is committed (a direct attempt commits it before its call)
        for candidate in candidates:
            refusal = candidate.adapter.unavailable()
            if refusal is None:
                video.upstream_profile = candidate.profile
                video.upstream_model = None if candidate.model == video.model else candidate.model
                # Our id travels with the create, for an upstream that calls back (app/upstream/reference.py).
                to_send = dataclasses.replace(fallbacks.command_for(candidate, command), reference=video.id)
                limits = admission.ProfileLimits.of(self._settings.upstream_profile(candidate.profile))
                try:
                    if limits is not None:
                        video.submitted_at = None  # waiting again, if a direct candidate before refused it
                        placed = await self._accept_waiting(session, video, to_send, limits)
                    else:
                        stored = True
                        placed = await self._send(
                            session, video, functools.partial(candidate.adapter.create_video, to_send)
                        )
                except GatewayError as exc:
                    if not fallbacks.moves_on(exc):
                        if stored and not render_may_have_started(exc):
                            await self._forget(session, video)
                        raise
                    refusal = exc
                else:
                    self._report_fallback(video, candidate, skipped)
                    return placed
            skipped.append(Skipped(candidate, fallbacks.skip_reason(refusal)))
            first_error = first_error or refusal
        if stored:
            await self._forget(session, video)
        if len(skipped) > 1:
            logger.warning(
                "create for model %s: no candidate could take it (%s)", video.model, fallbacks.describe(skipped)
            )
        assert first_error is not None, "a model always has its own profile as a candidate"
        raise first_error

    @staticmethod
    def _report_fallback(video: Video, used: Candidate, skipped: list[Skipped]) -> None:
        if not skipped:
            return
        logger.info(
            "create of %s (model %s) fell back past %s; sent to profile %s as model %s",
            video.id,
            video.model,
            fallbacks.describe(skipped),
            used.profile,
            used.model,
        )
        for entry in skipped:
            metrics.create_fallback(skipped=entry.candidate.profile, used=used.profile, reason=entry.reason)

    async def _accept_waiting(
        self, session: AsyncSession, video: Video, command: CreateVideoCommand, limits: admission.ProfileLimits
    ) -> Video:
        """Admission control: the video, its image and its `submit` job commit together, or (line full, 429)
        nothing does; the worker sends it upstream when its profile has room."""
        await admission.check_backlog(session, profile=video.upstream_profile, limits=limits, model=video.model)
        repository = VideoRepository.from_session(session)
        await repository.add(video)
        if (image := command.image) is not None:
            await ArchiveRepository.from_session(session).add_input(
                video.id,
                image=image.data,
                content_type=image.content_type,
                filename=image.filename,
                width=image.width,
                height=image.height,
            )
        await admission.enqueue_submit(session, video_id=video.id, settings=self._worker_settings)
        await session.commit()
        return video

    async def _submit(
        self,
        session: AsyncSession,
        video: Video,
        call: Callable[[], Awaitable[UpstreamVideo]],
    ) -> Video:
        """One paid call with no other place to go (a remix renders where its source did)."""
        try:
            return await self._send(session, video, call)
        except GatewayError as exc:
            if not render_may_have_started(exc):
                await self._forget(session, video)
            raise

    async def _send(
        self,
        session: AsyncSession,
        video: Video,
        call: Callable[[], Awaitable[UpstreamVideo]],
    ) -> Video:
        """Commit the row, then make the paid call. A failure that may have started a render settles the video
        as unknown; any other leaves the committed row to the caller of this (tried elsewhere, or forgotten)."""
        repository = VideoRepository.from_session(session)
        # Sent now (what the reconciler's search for a cut-off create and the profile's limits count from).
        video.submitted_at = datetime.now(UTC)
        await repository.add(video)
        # Commit the intent before money is spent: a crash after the upstream call leaves this row.
        await session.commit()
        try:
            upstream = await call()
        except GatewayError as exc:
            if render_may_have_started(exc):
                # The caller gets the error now, and a video.failed callback like every other failed render.
                await archive_service.settle_unknown_submission(
                    session, video=video, settings=self._settings, message=exc.message
                )
                await session.commit()
            raise
        video.upstream_id = upstream.id
        await self._apply(session, video, upstream)
        await session.commit()
        return video

    @staticmethod
    async def _forget(session: AsyncSession, video: Video) -> None:
        """Nothing was started upstream: the row goes, and with it the render the caller's limits counted."""
        await VideoRepository.from_session(session).remove(video)
        await session.commit()

    async def _apply(self, session: AsyncSession, video: Video, upstream: UpstreamVideo) -> None:
        """Fold in upstream's state; what it newly says (completed, failed) is acted on in this transaction."""
        await archive_service.record_upstream_state(session, video=video, upstream=upstream, settings=self._settings)

    def _refresh_due(self, video: Video | VideoView) -> bool:
        """The video is unfinished upstream and was last read from there longer ago than the refresh interval."""
        if video.upstream_id is None or video.status.is_terminal:
            return False
        return video.refreshed_at is None or datetime.now(UTC) - video.refreshed_at >= self._refresh_interval

    async def _refresh_if_due(self, session: AsyncSession, video: Video) -> None:
        if video.upstream_id is None or not self._refresh_due(video) or not self._gate.due(video.id):
            return
        upstream_id = video.upstream_id
        try:
            client = self._upstreams.adapter(video.upstream_profile)
            upstream = await self._gate.run(video.id, lambda: client.retrieve_video(upstream_id))
        except GatewayError as exc:
            # A poll still answers from what we know; the next one tries again.
            logger.warning("refresh of %s from upstream failed: %s", video.id, exc.message)
            return
        await self._apply(session, video, upstream)
