"""Upstream ids stay ours to know: text a caller reads names the caller's video id, never the provider's.

An upstream's error messages name its own ids ("Video with id 'video_…' not found.", "Operation … not
found."); the facade passes those messages on, and stores some (a failed render's reason, a failed
download's). Callers only know our ids (`video_` + our hex), so a provider's id would be a meaningless, and
leaky, reference: `as_caller_text` puts the caller's id in its place, and `caller_facing` does it to an error
on its way out.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from app.core.errors import GatewayError

# A Gemini operation's bare id (the last segment of `models/{model}/operations/{id}`) is replaced on its own
# too, as Google's messages may quote only it; shorter segments could be ordinary words, so they are left.
MIN_BARE_ID_CHARS = 8


def as_caller_text(text: str | None, *, upstream_id: str | None, video_id: str) -> str | None:
    """`text` with every mention of `upstream_id` (and of a Gemini operation's bare id) made `video_id`."""
    if not text or not upstream_id:
        return text
    text = text.replace(upstream_id, video_id)
    bare = upstream_id.rsplit("/", 1)[-1]
    if bare != upstream_id and len(bare) >= MIN_BARE_ID_CHARS:
        text = text.replace(bare, video_id)
    return text


@contextmanager
def caller_facing(*, upstream_id: str, video_id: str) -> Iterator[None]:
    """Errors raised inside name `video_id` wherever upstream's message named `upstream_id`."""
    try:
        yield
    except GatewayError as exc:
        message = as_caller_text(exc.message, upstream_id=upstream_id, video_id=video_id) or exc.message
        if message != exc.message:
            exc.message = message
            exc.args = (message,)
        raise
