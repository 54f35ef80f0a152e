"""Our video's id in the callback URL an upstream is given, so that a create cut off before upstream answered
can still be tied to the render it started.

Neither Ark (Seedance) nor fal take a client reference on create, and neither lists what a task was asked for
(Ark's task object carries no prompt; fal has no list at all), so a create whose answer was lost (the API
killed mid-call, or its connection to Postgres cut before the upstream id was written) cannot be found again by
what it asked for. What they do keep is the callback URL we give each create, which they call back as given.
So an adapter whose profile has a `webhook_url` adds `vg_ref=<video id>.<tag>` to it, where the tag is an
HMAC-SHA256 of the video id under a key derived from the profile's API key. The receiver keeps the video id a
valid reference names on the delivery it stores (an orphan: no video of ours has that upstream id yet), and
the reconciler adopts the render for that video once its create counts as cut off (app/archive/submissions.py),
after re-reading the render upstream with our key and checking it is what the video asked for.

The tag is what makes a reference trustworthy on an unsigned callback (Ark signs nothing): only Ark, given the
URL by us, and we can produce it. A reference is checked only to the extent it could mislead: a forged or
stale one is ignored (the delivery is stored as an orphan without a video, as before). A new API key makes the
references of creates still in flight unreadable, which costs only what the gateway did before references
existed: such a create, if cut off, is settled as unknown.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from typing import Final

import httpx
from pydantic import SecretStr

PARAM: Final = "vg_ref"
# The derivation label: a key for this purpose only, never the API key itself.
_LABEL: Final = b"video-gateway/submission-reference/v1"
_TAG_BYTES: Final = 16  # 128 bits: unforgeable, and short in a URL
# Our video ids (`video_` + hex); anything else is not a reference of ours and is not worth an HMAC.
_VIDEO_ID: Final = re.compile(r"video_[A-Za-z0-9]{1,64}")
_MAX_CHARS: Final = 128


class SubmissionReferences:
    """Makes and reads one profile's references (its API key is the key's source)."""

    def __init__(self, api_key: SecretStr) -> None:
        self._key = hmac.new(api_key.get_secret_value().encode(), _LABEL, hashlib.sha256).digest()

    def _tag(self, video_id: str) -> str:
        digest = hmac.new(self._key, video_id.encode(), hashlib.sha256).digest()[:_TAG_BYTES]
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")

    def make(self, video_id: str) -> str:
        return f"{video_id}.{self._tag(video_id)}"

    def callback_url(self, webhook_url: str, video_id: str | None) -> str:
        """The profile's `webhook_url` with this video's reference added (as it was when there is no video id:
        a smoke test's create, say)."""
        if video_id is None:
            return webhook_url
        return str(httpx.URL(webhook_url).copy_add_param(PARAM, self.make(video_id)))

    def video_id_of(self, reference: str | None) -> str | None:
        """The video a reference names, or None unless it is well formed and its tag is ours."""
        if reference is None or len(reference) > _MAX_CHARS:
            return None
        video_id, dot, tag = reference.partition(".")
        if not dot or not _VIDEO_ID.fullmatch(video_id):
            return None
        return video_id if hmac.compare_digest(tag, self._tag(video_id)) else None
