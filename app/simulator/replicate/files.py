"""The output files of the Replicate simulator: `GET /files/{file_id}/output.mp4`, standing in for replicate.delivery.

Replicate hands out output files as URLs on another host that need no token: the random path is the
capability. Here they are served by the simulator itself, without the API's auth, through
`app.simulator.streaming` (chunked, exact `Content-Length`), throttled and truncated as the download knobs say.
A file is gone (404) once its prediction's data is removed, `ttl_seconds` after the prediction ended.
"""

from __future__ import annotations

from starlette.responses import StreamingResponse

from app.simulator.render import VIDEO_FILE
from app.simulator.replicate.errors import not_found
from app.simulator.replicate.faults import ReplicateFaults
from app.simulator.replicate.state import Prediction
from app.simulator.streaming import Asset, stream

MEDIA_TYPE = "video/mp4"
FILE_ROUTE = "serve_file"


def locate(prediction: Prediction, now: float) -> Asset:
    if prediction.is_expired(now) or not prediction.has_file:
        raise not_found()
    if prediction.synthetic_bytes is not None:
        return Asset.synthetic(MEDIA_TYPE, prediction.synthetic_bytes)
    if prediction.directory is None:
        raise not_found()
    try:
        return Asset.on_disk(MEDIA_TYPE, prediction.directory / VIDEO_FILE)
    except FileNotFoundError as exc:  # removed between the lookup and now
        raise not_found() from exc


def file_response(asset: Asset, faults: ReplicateFaults) -> StreamingResponse:
    """The MP4, shaped by the download faults in force."""
    return stream(asset, truncate_after=faults.take_truncation(), bytes_per_second=faults.content_bytes_per_second)
