"""The operator console as a browser drives it: an https client, signing in, the form token, and what the pages
hold (the console gateway itself is the `console_app` fixture)."""

from __future__ import annotations

import re

import httpx
from fastapi import FastAPI

ADMIN_KEY = "vg-admin-console-test-0123456789"
PAGE_SIZE = 3
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
ROW_IDS = re.compile(r'data-video-id="([^"]+)"')


def browser(app: FastAPI) -> httpx.AsyncClient:
    """https, as a browser would need for the Secure cookie; redirects are asserted, not followed."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://console.test")


async def sign_in(client: httpx.AsyncClient) -> httpx.Response:
    return await client.post("/console/login", data={"admin_key": ADMIN_KEY, "next": "/console/videos"})


async def csrf_token(client: httpx.AsyncClient, page: str = "/console/videos") -> str:
    response = await client.get(page)
    assert response.status_code == 200, response.text
    found = CSRF_FIELD.search(response.text)
    assert found is not None
    return found.group(1)
