"""The generated files of the Gemini simulator: the key-protected download URI, its redirect, and the bytes.

`GET /v1beta/files/{id}:download?alt=media` (API key required) answers a 302 to `/download/{id}?token=...`
on the same server, a stand-in for the storage host Google redirects to; that target needs no key, the
per-file token authorises it. The body goes out through `app.simulator.streaming` (chunked, exact
`Content-Length`), throttled and truncated as the download knobs say. A file is gone (404) once its
operation's ttl has passed.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import RedirectResponse, StreamingResponse

from app.simulator.gemini.errors import not_found, permission_denied
from app.simulator.gemini.faults import GeminiFaults
from app.simulator.gemini.state import Operation
from app.simulator.render import VIDEO_FILE
from app.simulator.streaming import Asset, stream

MEDIA_TYPE = "video/mp4"
DOWNLOAD_ROUTE = "serve_download"


def check_available(operation: Operation, now: float) -> None:
    if not operation.file_available(now):
        raise not_found(f"File {operation.file_id} not found.")


def redirect(request: Request, operation: Operation, faults: GeminiFaults) -> RedirectResponse:
    url = request.url_for(DOWNLOAD_ROUTE, file_id=operation.file_id).include_query_params(
        token=operation.download_token
    )
    if faults.content_redirect_host:
        url = url.replace(hostname=faults.content_redirect_host)
    return RedirectResponse(str(url), status_code=302)


def check_token(operation: Operation, token: str) -> None:
    if not hmac.compare_digest(token.encode(), operation.download_token.encode()):
        raise permission_denied("The download token is not valid for this file.")


def locate(operation: Operation) -> Asset:
    if operation.synthetic_bytes is not None:
        return Asset.synthetic(MEDIA_TYPE, operation.synthetic_bytes)
    assert operation.directory is not None
    try:
        return Asset.on_disk(MEDIA_TYPE, operation.directory / VIDEO_FILE)
    except FileNotFoundError as exc:  # expired and removed between the lookup and now
        raise not_found(f"File {operation.file_id} not found.") from exc


def file_response(asset: Asset, faults: GeminiFaults) -> StreamingResponse:
    """The MP4, shaped by the download faults in force."""
    return stream(asset, truncate_after=faults.take_truncation(), bytes_per_second=faults.content_bytes_per_second)
