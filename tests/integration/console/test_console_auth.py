"""The console's door: admin-key login, a locked-down signed cookie, CSRF on every form, and no page without it."""

from __future__ import annotations

import re
import time

import httpx
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute

from app.console.routes import router as console_router
from app.console.session import COOKIE_NAME, SessionKeys
from app.core.resources import resources_of
from tests.support.console import ADMIN_KEY, browser, csrf_token, sign_in

PUBLIC = {("GET", "/console/login"), ("POST", "/console/login")}
SAMPLE_PARAMS = {"video_id": "video_doesnotexist", "delivery_id": "1"}


def console_routes() -> list[tuple[str, str]]:
    """Every route of the console's router (all its pages and actions live there), so a route added later is
    covered without editing this test; the requests below prove the router is mounted in the app."""
    found = []
    for route in console_router.routes:
        if isinstance(route, APIRoute):
            assert route.path.startswith("/console"), route.path
            for method in sorted(route.methods or ()):
                if (method, route.path) not in PUBLIC:
                    found.append((method, route.path.format(**SAMPLE_PARAMS)))
    return found


class TestLogin:
    async def test_the_admin_key_signs_in_with_a_locked_down_cookie(self, anonymous: httpx.AsyncClient) -> None:
        response = await sign_in(anonymous)
        assert response.status_code == 303
        assert response.headers["location"] == "/console/videos"
        cookie = response.headers["set-cookie"]
        assert cookie.startswith(f"{COOKIE_NAME}=")
        flags = {part.strip().split("=")[0].lower(): part.strip() for part in cookie.split(";")[1:]}
        assert {"httponly", "secure", "samesite", "path", "max-age"} <= set(flags)
        assert flags["samesite"].lower() == "samesite=strict"
        assert flags["path"] == "Path=/console"
        assert ADMIN_KEY not in cookie
        assert (await anonymous.get("/console/videos")).status_code == 200

    async def test_a_wrong_key_gets_the_form_again_and_no_cookie(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.post("/console/login", data={"admin_key": ADMIN_KEY + "x"})
        assert response.status_code == 401
        assert "set-cookie" not in response.headers
        assert "That is not the admin key" in response.text
        assert (await anonymous.get("/console/videos")).status_code == 303

    async def test_login_only_redirects_within_the_console(self, anonymous: httpx.AsyncClient) -> None:
        for target in ("https://evil.example/", "//evil.example/console/", "/v1/videos"):
            response = await anonymous.post("/console/login", data={"admin_key": ADMIN_KEY, "next": target})
            assert response.headers["location"] == "/console/videos", target

    async def test_the_login_page_is_server_rendered_with_a_labelled_field(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/console/login")
        assert response.status_code == 200
        assert '<label for="admin_key">' in response.text
        assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
        assert response.headers["cache-control"] == "no-store"


class TestWithoutASession:
    async def test_every_console_route_redirects_to_the_login_page(self, anonymous: httpx.AsyncClient) -> None:
        routes = console_routes()
        assert len(routes) >= 8  # the enumeration itself works (videos, rows, video, actions, webhooks, ...)
        for method, path in routes:
            response = await anonymous.request(method, path, data={"csrf_token": "x"} if method == "POST" else None)
            assert response.status_code == 303, (method, path, response.status_code)
            assert response.headers["location"].startswith("/console/login"), (method, path)

    async def test_a_get_comes_back_to_where_it_was_going(self, anonymous: httpx.AsyncClient) -> None:
        response = await anonymous.get("/console/webhooks?outcome=rejected")
        assert response.headers["location"] == "/console/login?next=%2Fconsole%2Fwebhooks%3Foutcome%3Drejected"

    @pytest.mark.parametrize(
        "cookie",
        ["", "v1.9999999999.nonce.forged", "garbage", "v2.1.a.b"],
    )
    async def test_a_forged_cookie_is_no_session(self, console_app: FastAPI, cookie: str) -> None:
        async with browser(console_app) as client:
            client.cookies.set(COOKIE_NAME, cookie, domain="console.test", path="/console")
            assert (await client.get("/console/videos")).status_code == 303

    async def test_an_expired_cookie_is_no_session(self, console_app: FastAPI) -> None:
        keys = resources_of(console_app).console_keys
        assert keys is not None
        issued_at = time.time() - 2 * keys.ttl_seconds
        stale = SessionKeys(keys._key, ttl_seconds=keys.ttl_seconds, clock=lambda: issued_at)
        cookie, _ = stale.issue()
        assert keys.check(cookie) is None
        async with browser(console_app) as client:
            client.cookies.set(COOKIE_NAME, cookie, domain="console.test", path="/console")
            assert (await client.get("/console/videos")).status_code == 303


class TestCsrf:
    async def test_a_post_without_the_token_is_refused(self, operator: httpx.AsyncClient) -> None:
        for data in ({}, {"csrf_token": "not-the-token"}):
            response = await operator.post("/console/videos/video_x/rearchive", data=data)
            assert response.status_code == 403
            response = await operator.post("/console/logout", data=data)
            assert response.status_code == 403
        assert (await operator.get("/console/videos")).status_code == 200  # still signed in

    async def test_another_sessions_token_is_refused(self, console_app: FastAPI, operator: httpx.AsyncClient) -> None:
        async with browser(console_app) as other:
            await sign_in(other)
            foreign = await csrf_token(other)
        assert foreign != await csrf_token(operator)
        response = await operator.post("/console/logout", data={"csrf_token": foreign})
        assert response.status_code == 403


class TestLogout:
    async def test_sign_out_clears_the_cookie(self, operator: httpx.AsyncClient) -> None:
        response = await operator.post("/console/logout", data={"csrf_token": await csrf_token(operator)})
        assert response.status_code == 303
        assert response.headers["location"].startswith("/console/login")
        assert re.search(r"(?i)max-age=0", response.headers["set-cookie"])
        assert (await operator.get("/console/videos")).status_code == 303


async def test_no_admin_key_means_no_console(gateway_app: FastAPI) -> None:
    async with browser(gateway_app) as client:
        assert (await client.get("/console/videos")).status_code == 404
        assert (await client.get("/console/login")).status_code == 404
