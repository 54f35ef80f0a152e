"""How `create_app` wires the gateway: its middleware, in order, all listed in one place; Idempotency-Key on
exactly the routes that start a paid upstream call."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.routing import RouteContext, iter_route_contexts
from pydantic import SecretStr
from starlette.routing import Mount

from app.console.tap import WebhookTap
from app.core.access_log import AccessLog
from app.core.body_limit import BodySizeLimit
from app.core.config import Mode, Settings, UpstreamProfile, WebhookSettings
from app.idempotency import middleware as idempotency
from app.idempotency.middleware import IdempotencyMiddleware
from app.idempotency.paid import is_paid
from app.main import create_app

SECRET = SecretStr("whsec_" + "A" * 43 + "=")


def settings(**update: object) -> Settings:
    return Settings(mode=Mode.DEV, webhooks=WebhookSettings(secrets=SECRET)).model_copy(update=update)


def test_the_middleware_runs_in_the_listed_order() -> None:
    """Outermost first (`user_middleware[0]` sees a request first); the order is part of the behaviour."""
    app = create_app(settings())
    classes: list[object] = [entry.cls for entry in app.user_middleware]
    assert classes == [
        AccessLog,
        WebhookTap,
        IdempotencyMiddleware,
        BodySizeLimit,
    ]
    # The access log names a request's route from the app's own table, filled after the list was made.
    assert app.user_middleware[0].kwargs["routes"] is app.router.routes


def test_the_webhook_tap_watches_every_receiver_path() -> None:
    app = create_app(settings())
    tap = app.user_middleware[1]
    assert tap.cls is WebhookTap  # type: ignore[comparison-overlap]
    assert tap.kwargs["paths"] == frozenset({"/webhooks/openai"})


# The paid POSTs as the contract names them; the marks on the routes must say the same.
PAID = {
    ("POST", "/v1/videos"),
    ("POST", "/v1/videos/{video_id}/remix"),
    ("POST", "/v1/videos/edits"),
    ("POST", "/v1/videos/extensions"),
    ("POST", "/v1/videos/characters"),
}
# Path parameters filled in with values a client could send, including ones that look like our own words.
SAMPLES = ("video_0123456789abcdef", "char_01", "1", "edits", "characters", "remix")


def every_route() -> Settings:
    """The admin API and console on, the main webhook receiver and a second profile's: every route mounted."""
    second = UpstreamProfile(base_url="https://second.example/v1", models=["second-model"], webhook_secrets=SECRET)
    return settings(admin_api_key=SecretStr("vg-admin-0123456789abcdef"), upstreams={"second": second})


def routes(app: FastAPI) -> list[RouteContext]:
    """Every route of the app, those of included routers too, at the paths they are served at."""
    return list(iter_route_contexts(app.routes))


def test_the_paid_routes_are_the_marked_ones() -> None:
    app = create_app(every_route())
    marked = {
        (method, route.path) for route in routes(app) if is_paid(route.endpoint) for method in route.methods or ()
    }
    assert marked == PAID


@pytest.mark.parametrize("sample", SAMPLES)
def test_idempotency_handles_exactly_the_paid_routes(sample: str) -> None:
    """Every route of the app, each method: the middleware's path matcher says yes for the marked POSTs and no
    for everything else, so a new paid route without a matching pattern (or the reverse) fails here."""
    app = create_app(every_route())
    checked: set[str] = set()
    for route in routes(app):
        assert route.path is not None, route
        if isinstance(route.original_route, Mount):  # static files: any path below it
            assert not idempotency.handles("POST", f"{route.path}/{sample}"), route.path
            continue
        path = re.sub(r"\{[^}]+\}", sample, route.path)
        for method in sorted(route.methods or ()):
            expected = method == "POST" and is_paid(route.endpoint)
            assert idempotency.handles(method, path) is expected, (method, route.path, path)
            checked.add(route.path)
    # The enumeration saw the whole app: the API, the admin API, both webhook receivers, the console.
    assert {"/v1/videos", "/v1/admin/callers", "/webhooks/openai", "/webhooks/second", "/console/login"} <= checked
