"""The second webhook-ingest baseline: verify the Standard Webhooks signature, then one INSERT on raw asyncpg.

The least any durable receiver does: the delivery is on disk (committed) before it is acknowledged, and a
redelivery of the same `webhook-id` is recognised (`ON CONFLICT DO NOTHING`: one statement, no second round
trip). Its own table (named by `BENCH_TABLE`, created at startup in the benchmark's throwaway database, never one
of the gateway's), a pool as large as the gateway's (20 connections, no overflow), served by uvicorn like
`bench.verify_app`.

The `X-Request-ID` header is echoed, as the gateway does, so `bench.ingest` can check afterwards that every
delivery this endpoint acknowledged is in its table. The secret comes from `BENCH_WEBHOOK_SECRET`, the
database from `BENCH_DSN`. Nothing of `app` is imported: none of the gateway's costs come along.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

POOL_SIZE = 20

_verifier = Webhook(os.environ["BENCH_WEBHOOK_SECRET"])
_TABLE = os.environ["BENCH_TABLE"]
# The table is the benchmark's own, named by it; only the values are a sender's.
_INSERT = f"INSERT INTO {_TABLE} (webhook_id, body) VALUES ($1, $2) ON CONFLICT (webhook_id) DO NOTHING"  # noqa: S608


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pool = await asyncpg.create_pool(os.environ["BENCH_DSN"], min_size=1, max_size=POOL_SIZE)
    await app.state.pool.execute(
        f"CREATE TABLE IF NOT EXISTS {_TABLE} (webhook_id text PRIMARY KEY, body text NOT NULL, "
        "received_at timestamptz NOT NULL DEFAULT now())"
    )
    try:
        yield
    finally:
        await app.state.pool.close()


app = FastAPI(openapi_url=None, lifespan=_lifespan)


@app.post("/webhooks/openai")
async def receive(request: Request) -> Response:
    body = await request.body()
    try:
        _verifier.verify(body, dict(request.headers))
    except WebhookVerificationError:
        return Response(status_code=401)
    await request.app.state.pool.execute(_INSERT, request.headers["webhook-id"], body.decode())
    tag = request.headers.get("x-request-id")
    return Response(status_code=200, headers={"x-request-id": tag} if tag else None)
