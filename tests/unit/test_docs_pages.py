"""Swagger UI and ReDoc load their scripts from a public CDN: the pages exist only in dev mode.

`/openapi.json` stays in every mode: it is our own JSON (the same document as `openapi.yaml`), no third-party
code runs, and tooling reads it.
"""

from __future__ import annotations

import httpx
import pytest
from pydantic import SecretStr

from app.core.config import Mode, Settings, UpstreamSettings, WebhookSettings
from app.main import create_app

SECRET = SecretStr("whsec_" + "A" * 43 + "=")


def app_in(mode: Mode) -> httpx.AsyncClient:
    settings = Settings(
        mode=mode,
        upstream=UpstreamSettings(api_key=SecretStr("sk-real-looking")),
        webhooks=WebhookSettings(secrets=SECRET),
    )
    # No lifespan: these pages need neither the database nor S3.
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(settings)), base_url="http://gw.test")


@pytest.mark.parametrize("path", ["/docs", "/redoc", "/docs/oauth2-redirect"])
async def test_documentation_pages_do_not_exist_outside_dev_mode(path: str) -> None:
    async with app_in(Mode.PRODUCTION) as client:
        response = await client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


async def test_the_schema_itself_is_served_in_every_mode() -> None:
    async with app_in(Mode.PRODUCTION) as client:
        response = await client.get("/openapi.json")
    assert response.status_code == 200
    assert "/v1/videos" in response.json()["paths"]


async def test_dev_mode_keeps_the_pages() -> None:
    async with app_in(Mode.DEV) as client:
        assert (await client.get("/docs")).status_code == 200
        assert (await client.get("/redoc")).status_code == 200
