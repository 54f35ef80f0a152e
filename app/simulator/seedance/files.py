"""The generated files of the Seedance simulator: a stand-in for the TOS object storage behind `video_url`.

Ark hands out `content.video_url` as a presigned TOS URL on a storage host, not on the API host; it needs no
API key (the signature in the query authorises it) and stops working 24 hours after the task succeeded. Here
`GET /files/{file_id}.mp4?<signed query>` serves the MP4 when the query is byte for byte the one issued (a
client that re-encodes it is refused, as a re-encoded signature would be), and answers in TOS's XML error shape
otherwise: 403 `SignatureDoesNotMatch`, 403 `AccessDenied` once the URL has expired, 404 `NoSuchKey`. The
body goes out through `app.simulator.streaming` (exact `Content-Length`), throttled and truncated as the
download knobs say.
"""

from __future__ import annotations

import hmac
from xml.sax.saxutils import escape

from starlette.responses import Response, StreamingResponse

from app.simulator.render import VIDEO_FILE
from app.simulator.seedance.faults import SeedanceFaults
from app.simulator.seedance.state import Task
from app.simulator.streaming import Asset, stream

MEDIA_TYPE = "video/mp4"
DOWNLOAD_ROUTE = "download_file"


def tos_error(status: int, code: str, message: str) -> Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{escape(message)}</Message></Error>"
    )
    return Response(body, status_code=status, media_type="application/xml")


def refusal(task: Task | None, raw_query: bytes, now: float) -> Response | None:
    """The TOS error for this download, or None when the file may be served."""
    if task is None:
        return tos_error(404, "NoSuchKey", "The specified key does not exist.")
    if not hmac.compare_digest(raw_query, task.signed_query.encode()):
        return tos_error(403, "SignatureDoesNotMatch", "The request signature we calculated does not match.")
    if task.is_url_expired(now) or (task.directory is None and task.synthetic_bytes is None):
        return tos_error(403, "AccessDenied", "Request has expired.")
    return None


def locate(task: Task) -> Asset | None:
    """The file to send; None when it was removed between the checks and now."""
    if task.synthetic_bytes is not None:
        return Asset.synthetic(MEDIA_TYPE, task.synthetic_bytes)
    assert task.directory is not None
    try:
        return Asset.on_disk(MEDIA_TYPE, task.directory / VIDEO_FILE)
    except FileNotFoundError:
        return None


def file_response(asset: Asset, faults: SeedanceFaults) -> StreamingResponse:
    """The MP4, shaped by the download faults in force."""
    return stream(asset, truncate_after=faults.take_truncation(), bytes_per_second=faults.content_bytes_per_second)
