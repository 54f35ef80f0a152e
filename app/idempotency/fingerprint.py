"""What makes two requests "the same request" for an `Idempotency-Key`, and the key header itself. Pure.

The fingerprint is a SHA-256 over the method, the path with its query, the media type and the body, where
the body is normalised first so that a faithful retry always matches:
- multipart by its parts, not its bytes: the stock SDK (httpx) draws a new random boundary for every
  attempt, so a retried create never has the same bytes. Each part counts by its name, whether it is a
  file, and the SHA-256 of its content; parts are sorted by name (the gateway reads fields by name).
  File names and part content types are left out: the gateway decides an image's type from its bytes;
- JSON by its canonical form (sorted keys, no whitespace);
- anything else, or a body that does not parse, by its raw bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

from python_multipart.multipart import MultipartParser, parse_options_header

from app.core import json_body

MAX_KEY_CHARS = 255


class InvalidKey(ValueError):
    """The `Idempotency-Key` header is not a usable key."""


def parse_key(values: Iterable[bytes]) -> str:
    """The key of the `Idempotency-Key` header values given: an sf-string (`"..."`, as the draft says) or,
    as most clients send it, a bare token. 1-255 printable ASCII characters."""
    found = list(values)
    if len(found) != 1:
        raise InvalidKey("Send exactly one Idempotency-Key header.")
    try:
        raw = found[0].decode("ascii").strip(" \t")
    except UnicodeDecodeError as exc:
        raise InvalidKey("Idempotency-Key must be printable ASCII.") from exc
    if len(raw) >= 2 and raw.startswith('"') and raw.endswith('"'):
        key = _unquote(raw[1:-1])
    elif '"' in raw:
        raise InvalidKey("Idempotency-Key is not a valid string.")
    else:
        key = raw
    if not 1 <= len(key) <= MAX_KEY_CHARS:
        raise InvalidKey(f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters long.")
    if not all(" " <= char <= "~" for char in key):
        raise InvalidKey("Idempotency-Key must be printable ASCII.")
    return key


def _unquote(inner: str) -> str:
    out: list[str] = []
    chars = iter(inner)
    for char in chars:
        if char == "\\":
            escaped = next(chars, "")
            if escaped not in ('"', "\\"):
                raise InvalidKey("Idempotency-Key is not a valid string.")
            out.append(escaped)
        elif char == '"':
            raise InvalidKey("Idempotency-Key is not a valid string.")
        else:
            out.append(char)
    return "".join(out)


def request_fingerprint(*, method: str, path: str, query_string: bytes, content_type: str | None, body: bytes) -> str:
    media_type, options = parse_options_header(content_type or "")
    kind = media_type.decode("latin-1").strip().lower()
    normalised: Any = None
    if kind == "multipart/form-data" and options.get(b"boundary"):
        normalised = _multipart_parts(body, options[b"boundary"])
    elif kind == "application/json" or kind.endswith("+json"):
        normalised = _canonical_json(body)
    if normalised is None:
        normalised = {"raw": hashlib.sha256(body).hexdigest()}
    envelope = [method.upper(), path, query_string.decode("latin-1"), kind, normalised]
    return hashlib.sha256(json.dumps(envelope, separators=(",", ":"), sort_keys=True).encode()).hexdigest()


def _canonical_json(body: bytes) -> dict[str, str] | None:
    try:
        # The shared parser: a 10,000-deep body is a refusal here (hashed raw; the route answers 400), not a
        # RecursionError escaping the middleware.
        value = json_body.loads(body)
    except json_body.JsonRefused:
        return None
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return {"json": hashlib.sha256(canonical.encode("utf-8")).hexdigest()}


def _multipart_parts(body: bytes, boundary: bytes) -> dict[str, list[list[str | bool]]] | None:
    """`[[name, is_file, sha256], ...]` sorted, or None when the body is not well-formed multipart."""
    parts: list[list[str | bool]] = []
    headers: dict[bytes, bytes] = {}
    field = bytearray()
    value = bytearray()
    digest = hashlib.sha256()

    def on_part_begin() -> None:
        nonlocal digest
        headers.clear()
        digest = hashlib.sha256()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(field).strip().lower()] = bytes(value).strip()
        field.clear()
        value.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        digest.update(data[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", errors="replace")
        parts.append([name, b"filename" in disposition, digest.hexdigest()])

    ended = False

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(
        boundary,
        callbacks={
            "on_part_begin": on_part_begin,
            "on_header_field": on_header_field,
            "on_header_value": on_header_value,
            "on_header_end": on_header_end,
            "on_part_data": on_part_data,
            "on_part_end": on_part_end,
            "on_end": on_end,
        },
    )
    try:
        parser.write(body)
        parser.finalize()
    except Exception:  # any parse failure: fall back to the raw bytes
        return None
    if not ended:
        return None
    return {"multipart": sorted(parts, key=lambda part: (str(part[0]), str(part[2])))}
