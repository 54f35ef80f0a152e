"""Byte ranges on content (RFC 9110 §14): what a `Range` header asks for, and which bytes of a copy it selects.

Only archived copies are served in ranges (their size is known, and S3 answers ranged GETs); content still
streamed from upstream ignores `Range` and says so (`Accept-Ranges: none`).

What is honoured: one range, `bytes=first-last`, `bytes=first-` or `bytes=-suffix`, answered 206 with
`Content-Range`; a last position past the end is clipped to it. What is ignored, as the RFC allows, with the
whole copy as a 200: several ranges (`bytes=0-1,5-6`: players ask for one; a multipart/byteranges answer
is not worth its complexity), another unit, a malformed or backwards range, and any request carrying
`If-Range` (the gateway hands out no validators, so no `If-Range` can match one). A range that starts at or
past the end (or a zero-length suffix) is a 416 with `Content-Range: bytes */size`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

from app.core.errors import GatewayError

_POSITION: Final = re.compile(r"[0-9]{1,19}")


@dataclass(frozen=True)
class RangeRequest:
    """One byte range as asked: `first` None is a suffix of `last` bytes; `last` None runs to the end."""

    first: int | None
    last: int | None


class RangeNotSatisfiable(GatewayError):
    """The range starts past the end of the copy; `Content-Range` says how long the copy is."""

    status_code = 416
    type = "invalid_request_error"
    code = "range_not_satisfiable"

    def __init__(self, size: int) -> None:
        super().__init__(
            f"The requested range is not satisfiable: the content is {size} bytes long.",
            param="range",
            headers={"Content-Range": f"bytes */{size}"},
        )


def parse_range(header: str | None, *, if_range: str | None = None) -> RangeRequest | None:
    """The one byte range `header` asks for; None when the whole copy should be sent (see the module)."""
    if header is None or if_range is not None:
        return None
    unit, equals, ranges = header.partition("=")
    if not equals or unit.strip().lower() != "bytes" or "," in ranges:
        return None
    first, dash, last = (part.strip() for part in ranges.partition("-"))
    if not dash or not (first or last):
        return None
    if (first and not _POSITION.fullmatch(first)) or (last and not _POSITION.fullmatch(last)):
        return None
    if not first:
        return RangeRequest(first=None, last=int(last))
    if last and int(last) < int(first):
        return None  # invalid, so ignored (RFC 9110 §14.1.1)
    return RangeRequest(first=int(first), last=int(last) if last else None)


def resolve(request: RangeRequest, size: int) -> tuple[int, int]:
    """The first and last offsets (inclusive) `request` selects in a copy of `size` bytes; 416 when none."""
    if request.first is None:
        suffix = request.last or 0
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable(size)
        return max(0, size - suffix), size - 1
    if request.first >= size:
        raise RangeNotSatisfiable(size)
    last = size - 1 if request.last is None else min(request.last, size - 1)
    return request.first, last
