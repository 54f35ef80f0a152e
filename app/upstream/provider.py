"""The adapter interface: what routes, services, the queue, the reconciler and the archive may ask of an upstream.

Every upstream profile has one adapter, chosen by its `kind` (app/upstream/router.py). Each adapter maps
OpenAI's `/v1/videos` operations onto its provider and the provider's states, errors and outputs back onto
OpenAI's video object (`UpstreamVideo`), so nothing above this package knows which provider it talks to.
"""

from __future__ import annotations

from contextlib import AbstractAsyncContextManager
from typing import Protocol

import httpx

from app.core.errors import GatewayError, InvalidRequest
from app.upstream.capabilities import ModelCapabilities
from app.upstream.schemas import (
    CharacterCommand,
    CreateVideoCommand,
    EditCommand,
    ExtendCommand,
    UpstreamCharacter,
    UpstreamVideo,
)


class VideoProvider(Protocol):
    profile: str
    kind: str
    # Variants the provider itself serves; the archive derives the others from the archived MP4.
    served_variants: frozenset[str]

    def capabilities(self, model: str) -> ModelCapabilities: ...

    def check_create(self, command: CreateVideoCommand) -> None:
        """A 400 naming the parameter the model cannot honour, before anything is paid for."""

    def check_remix(self, model: str) -> None:
        """A 400 `unsupported_by_provider` when the provider cannot remix."""

    def unavailable(self) -> GatewayError | None:
        """None while calls may go to the provider; else the error any call fails with at once, nothing sent
        (its circuit breaker is open: 503; a 429's Retry-After is in force: 429), Retry-After included. Cheap, no
        I/O: a create picks the first of its model's candidates without one (fallbacks)."""

    async def create_video(self, command: CreateVideoCommand) -> UpstreamVideo: ...

    async def remix_video(self, upstream_id: str, *, prompt: str) -> UpstreamVideo: ...

    async def edit_video(self, command: EditCommand) -> UpstreamVideo:
        """A paid call, made only after `capabilities.check_edit` passed (never retried)."""
        ...

    async def extend_video(self, command: ExtendCommand) -> UpstreamVideo:
        """A paid call, made only after `capabilities.check_extend` passed (never retried)."""
        ...

    async def create_character(self, command: CharacterCommand) -> UpstreamCharacter: ...

    async def retrieve_video(self, upstream_id: str) -> UpstreamVideo: ...

    async def delete_video(self, upstream_id: str) -> None: ...

    async def recent_videos(self, *, created_since: int) -> list[UpstreamVideo] | None:
        """Upstream's renders created at or after `created_since` (Unix seconds), a bounded number; None when
        the provider cannot list its renders. The reconciler matches creates cut off before upstream answered
        against these (app/archive/submissions.py)."""

    def stream_content(self, upstream_id: str, *, variant: str) -> AbstractAsyncContextManager[httpx.Response]:
        """The open response of one served variant, body not yet read."""
        ...

    def called_back_id(self, delivered_id: str, *, model: str) -> str:
        """Our upstream id of the render a callback names as `delivered_id`, created for `model` (fal's callback
        names only the request, our id adds the app); the reconciler adopts it for a cut-off create whose
        reference the callback carried (app/upstream/reference.py)."""
        ...

    async def aclose(self) -> None: ...


class RendersOnlyFromPrompts:
    """For adapters whose provider cannot edit, extend or make characters: their capabilities say so, so the
    video service refuses with a 400 before calling; these answer the same if called anyway."""

    async def edit_video(self, command: EditCommand) -> UpstreamVideo:
        raise InvalidRequest("This provider cannot edit a video.", param="video", code="unsupported_by_provider")

    async def extend_video(self, command: ExtendCommand) -> UpstreamVideo:
        raise InvalidRequest("This provider cannot extend a video.", param="video", code="unsupported_by_provider")

    async def create_character(self, command: CharacterCommand) -> UpstreamCharacter:
        raise InvalidRequest("This provider cannot make characters.", param="model", code="unsupported_by_provider")
