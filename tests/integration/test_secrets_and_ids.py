"""docs/reliability.md rows 50 and 56: ids that cannot be guessed; secrets that fail closed and never show."""

from __future__ import annotations

import re

import httpx
import pytest
from fastapi import FastAPI

from app.core.config import WebhookSettings
from app.core.resources import resources_of
from app.main import create_app
from tests.support.settings import make_settings


async def test_video_ids_are_128_random_bits(api: httpx.AsyncClient) -> None:
    ids = [(await api.post("/v1/videos", json={"prompt": f"clip {n}"})).json()["id"] for n in range(20)]
    assert all(re.fullmatch(r"video_[0-9a-f]{32}", video_id) for video_id in ids)
    assert len(set(ids)) == 20
    # Nothing sequential to walk: no two ids share their first 8 hex digits in this sample.
    assert len({video_id[6:14] for video_id in ids}) == 20


async def test_health_answers_reveal_no_configuration(gateway_app: FastAPI) -> None:
    settings = resources_of(gateway_app).settings
    secrets = [
        settings.upstream.api_key.get_secret_value(),
        settings.s3.secret_access_key.get_secret_value(),
        *settings.webhooks.secret_list(),
        settings.db.url.get_secret_value(),
    ]
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=gateway_app), base_url="http://g") as client:
        for path in ("/healthz", "/readyz"):
            response = await client.get(path)
            assert response.status_code == 200
            assert not any(secret in response.text for secret in secrets)


@pytest.mark.parametrize("configured", [None, "not-a-whsec-secret", "whsec_c2hvcnQ="])
def test_the_api_refuses_to_start_with_webhooks_on_and_no_usable_secret(
    database_url: str, configured: str | None
) -> None:
    settings = make_settings(database_url).model_copy(update={"webhooks": WebhookSettings(secrets=configured)})
    with pytest.raises(ValueError, match="secret"):
        create_app(settings)
    # With webhooks switched off, the same settings start.
    create_app(settings.model_copy(update={"webhooks": WebhookSettings(enabled=False)}))
