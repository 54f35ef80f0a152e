"""The facade baseline: the least an authenticated retrieve does, on raw asyncpg.

Two routes, served by uvicorn like the other bare baselines (`bench.verify_app`), against the benchmark's own
gateway database (`BENCH_DSN`), so they read the very rows the gateway reads:

- `GET /v1/videos/{id}`: check the bearer key the way the gateway stores keys (SHA-256 of the key; the first
  16 hex characters of the digest find the `api_keys` row, not revoked, not expired, its caller not disabled;
  the full digest is compared in constant time), then read the caller's video row by id;
- `GET /v1/videos?limit=N`: the same key check, then the caller's newest `N` videos (by `seq`, the gateway's
  list order).

Each answer is the row(s) as JSON, nothing more: no ORM, no middleware, no rate limit, no access log, no
asset lookup, no upstream refresh. Nothing of `app` is imported (its settings, models and middleware would
come with it); the key scheme is repeated here from `app/auth/keys.py`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg
from fastapi import FastAPI, Request, Response

POOL_SIZE = 20
LOOKUP_CHARS = 16

_KEY = (
    "SELECT k.digest, k.caller_id FROM api_keys k JOIN callers c ON c.id = k.caller_id "
    "WHERE k.lookup = $1 AND k.revoked_at IS NULL AND (k.expires_at IS NULL OR k.expires_at > now()) "
    "AND c.disabled_at IS NULL"
)
_ONE = "SELECT * FROM videos WHERE id = $1 AND caller_id = $2 AND deleted_at IS NULL"
_PAGE = "SELECT * FROM videos WHERE caller_id = $1 AND deleted_at IS NULL ORDER BY seq DESC LIMIT $2"


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=1, max_size=POOL_SIZE)
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(openapi_url=None, lifespan=_lifespan)


async def _caller(connection: Any, authorization: str | None) -> Any:
    """The caller id behind `Authorization: Bearer <key>`, or None."""
    scheme, _, key = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not key:
        return None
    digest = hashlib.sha256(key.strip().encode()).digest()
    row = await connection.fetchrow(_KEY, digest.hex()[:LOOKUP_CHARS])
    if not hmac.compare_digest(digest, row["digest"] if row else bytes(32)) or row is None:
        return None
    return row["caller_id"]


def _json(value: Any) -> Response:
    return Response(json.dumps(value, default=str), media_type="application/json")


@app.get("/v1/videos/{video_id}")
async def retrieve(video_id: str, request: Request) -> Response:
    async with request.app.state.pool.acquire() as connection:
        caller = await _caller(connection, request.headers.get("authorization"))
        if caller is None:
            return Response(status_code=401)
        row = await connection.fetchrow(_ONE, video_id, caller)
    return _json(dict(row)) if row is not None else Response(status_code=404)


@app.get("/v1/videos")
async def list_videos(request: Request, limit: int = 20) -> Response:
    async with request.app.state.pool.acquire() as connection:
        caller = await _caller(connection, request.headers.get("authorization"))
        if caller is None:
            return Response(status_code=401)
        found = await connection.fetch(_PAGE, caller, limit)
    return _json({"object": "list", "data": [dict(row) for row in found]})
