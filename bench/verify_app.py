"""The first webhook-ingest baseline: a bare FastAPI endpoint that only verifies the Standard Webhooks signature
(the second, `bench.verify_insert_app`, also stores the delivery).

Run by `bench.ingest` under uvicorn with the gateway's own server settings (default loop and HTTP parser,
no access log); the secret comes from `BENCH_WEBHOOK_SECRET`. No database, no parsing beyond what
`standardwebhooks.verify` does itself.
"""

from __future__ import annotations

import os

from fastapi import FastAPI, Request, Response
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

_verifier = Webhook(os.environ["BENCH_WEBHOOK_SECRET"])

app = FastAPI(openapi_url=None)


@app.post("/webhooks/openai")
async def receive(request: Request) -> Response:
    body = await request.body()
    try:
        _verifier.verify(body, dict(request.headers))
    except WebhookVerificationError:
        return Response(status_code=401)
    return Response(status_code=200)
