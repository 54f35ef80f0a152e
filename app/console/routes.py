"""`/console`: the operator's HTML pages (login, videos, one video, webhooks, callers) and their two actions.

Every route but the login form needs a valid session cookie; without one the answer is a 303 to
`/console/login` (a GET remembers where it was going). Every POST also needs the session's CSRF token, on
top of the cookie's `SameSite=Strict`. With no admin key configured the console does not exist (404), like
the admin API. Wrong keys at sign-in are throttled together with the admin API's (app/auth/throttle.py).
Routes parse, call `app.console.service`, render; none of them is in `openapi.yaml`.

Archived media is played from S3 through short-lived presigned URLs (the existing `VG_S3__PRESIGN_TTL_SECONDS`
machinery) rather than proxied through the API: S3 already answers the Range requests a `<video>` element
makes, the bytes never pass through an API pod, and a leaked URL dies within minutes. The page's CSP allows
media and images from the S3 origin those URLs point at, and from nowhere else.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, FastAPI, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from app.auth.deps import client_address
from app.auth.errors import AdminKeyThrottled
from app.auth.keys import admin_key_matches
from app.console import service as console_service
from app.console.session import COOKIE_NAME, COOKIE_PATH, ConsoleSession, SessionKeys
from app.core.errors import ResourceNotFound
from app.core.resources import resources
from app.core.timestamps import short_duration
from app.deps import (
    AdminThrottle,
    ArchiveStorageDep,
    ConsoleKeysDep,
    DeliveryLogDep,
    SessionDep,
    SettingsDep,
    UpstreamsDep,
)

logger = logging.getLogger(__name__)

HERE: Final = Path(__file__).resolve().parent
LOGIN_PATH: Final = "/console/login"
HOME_PATH: Final = "/console/videos"
NONE_SHOWN: Final = "\u2013"  # an en dash: "no value" in a table cell
STATIC_PATH: Final = "/console/static"

templates = Jinja2Templates(directory=HERE / "templates")


# ----- template helpers ---------------------------------------------------------------------------


def duration(seconds: float | None) -> str:
    return short_duration(seconds, none=NONE_SHOWN)


def when(moment: datetime | None) -> str:
    return NONE_SHOWN if moment is None else moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


templates.env.filters["duration"] = duration
templates.env.filters["when"] = when


# ----- sessions -----------------------------------------------------------------------------------


class LoginRequired(Exception):
    """No valid session: answered with a 303 to the login page (never an error body)."""

    def __init__(self, next_path: str | None) -> None:
        super().__init__("login required")
        self.next_path = next_path


async def session_keys(keys: ConsoleKeysDep) -> SessionKeys:
    if keys is None:
        raise ResourceNotFound("Not Found")  # no admin key: no console, as for the admin API
    return keys


Keys = Annotated[SessionKeys, Depends(session_keys)]


def safe_next(path: str | None) -> str:
    """Only a console path of ours (never `//host` or a scheme): the login must not be an open redirect."""
    if path and path.startswith("/console/") and not path.startswith("//") and "\\" not in path:
        return path
    return HOME_PATH


async def current_session(request: Request, keys: Keys) -> ConsoleSession:
    session = keys.check(request.cookies.get(COOKIE_NAME))
    if session is None:
        wanted = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise LoginRequired(wanted if request.method == "GET" else None)
    return session


Session = Annotated[ConsoleSession, Depends(current_session)]


class CsrfRefused(Exception):
    """A console POST without the session's CSRF token."""


async def checked_form(request: Request, session: Session, keys: Keys) -> ConsoleSession:
    """The session, for a POST whose form carries its CSRF token; anything else is refused with 403."""
    form = await request.form()
    token = form.get("csrf_token")
    if not keys.csrf_ok(session, token if isinstance(token, str) else None):
        logger.warning("console: refused %s %s, bad or missing CSRF token", request.method, request.url.path)
        raise CsrfRefused()
    return session


CheckedSession = Annotated[ConsoleSession, Depends(checked_form)]


# ----- responses ----------------------------------------------------------------------------------


def secure_headers(response: Response, *, media_origins: Iterable[str] = ()) -> Response:
    """No caching of operator pages, no framing, and scripts, styles and media only from known origins."""
    media = " ".join(["'self'", *media_origins])
    response.headers["content-security-policy"] = (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
        f"img-src {media} data:; media-src {media}; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    )
    response.headers["cache-control"] = "no-store"
    response.headers["x-frame-options"] = "DENY"
    response.headers["x-content-type-options"] = "nosniff"
    response.headers["referrer-policy"] = "same-origin"
    return response


def page(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: ConsoleSession | None,
    status_code: int = 200,
    media_origins: Iterable[str] = (),
) -> Response:
    settings = resources(request).settings
    response = templates.TemplateResponse(
        request,
        name,
        {
            "session": session,
            "csrf_token": session.csrf_token if session else "",
            "refresh_seconds": settings.console.refresh_seconds,
            "notice": request.query_params.get("notice"),
            **context,
        },
        status_code=status_code,
    )
    return secure_headers(response, media_origins=media_origins)


def see_other(path: str, **query: object) -> Response:
    shown = {name: value for name, value in query.items() if value is not None}
    return secure_headers(RedirectResponse(path + (f"?{urlencode(shown)}" if shown else ""), status_code=303))


# ----- routes -------------------------------------------------------------------------------------

router = APIRouter(prefix="/console", include_in_schema=False)


@router.get("/login")
async def login_form(request: Request, keys: Keys, next: str | None = None) -> Response:
    if keys.check(request.cookies.get(COOKIE_NAME)) is not None:
        return see_other(safe_next(next))
    return page(request, "login.html", {"next": safe_next(next), "failed": False}, session=None)


@router.post("/login")
async def login(
    request: Request,
    keys: Keys,
    settings: SettingsDep,
    throttle: AdminThrottle,
    admin_key: Annotated[str, Form(max_length=1024)] = "",
    next: Annotated[str, Form(max_length=2048)] = HOME_PATH,
) -> Response:
    # A login form cannot carry a session's CSRF token (there is no session yet). Login CSRF would only sign
    # the victim in as the one operator identity there is, with a key the attacker would have to know.
    # Wrong keys are throttled with the admin API's (the same secret): while locked out, nothing is compared.
    address = client_address(request)
    try:
        throttle.check(address)
    except AdminKeyThrottled as locked:
        context = {"next": safe_next(next), "failed": False, "retry_after": locked.retry_after_seconds}
        response = page(request, "login.html", context, session=None, status_code=429)
        response.headers["retry-after"] = str(locked.retry_after_seconds)
        return response
    if not admin_key_matches(admin_key, settings):
        if admin_key:  # an empty form is not a guess
            throttle.failed(address)
        logger.warning("console: failed sign-in from %s", address)
        return page(request, "login.html", {"next": safe_next(next), "failed": True}, session=None, status_code=401)
    throttle.succeeded(address)
    cookie, _ = keys.issue()
    response = see_other(safe_next(next))
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=keys.ttl_seconds,
        path=COOKIE_PATH,
        secure=True,
        httponly=True,
        samesite="strict",
    )
    logger.info("console: operator signed in")
    return response


@router.post("/logout")
async def logout(session: CheckedSession) -> Response:
    response = see_other(LOGIN_PATH, notice="signed_out")
    response.delete_cookie(COOKIE_NAME, path=COOKIE_PATH, secure=True, httponly=True, samesite="strict")
    return response


@router.get("")
async def home(session: Session) -> Response:
    return see_other(HOME_PATH)


@router.get("/videos")
async def videos(
    request: Request,
    session: Session,
    db: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    caller: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Response:
    filters = console_service.VideoFilters.parse(status=status, caller=caller)
    listing = await console_service.video_page(db, settings=settings, filters=filters, after=after, before=before)
    return page(
        request,
        "videos.html",
        {"page": listing, "statuses": console_service.STATUSES, "query": request.url.query},
        session=session,
    )


@router.get("/videos/rows")
async def video_rows(
    request: Request,
    session: Session,
    db: SessionDep,
    settings: SettingsDep,
    status: str | None = None,
    caller: str | None = None,
    after: str | None = None,
    before: str | None = None,
) -> Response:
    """The table body alone, for the page's self-refresh (same filters and cursor as the page)."""
    filters = console_service.VideoFilters.parse(status=status, caller=caller)
    listing = await console_service.video_page(
        db, settings=settings, filters=filters, after=after, before=before, with_callers=False
    )
    return page(request, "_video_rows.html", {"page": listing}, session=session)


@router.get("/videos/{video_id}")
async def video(
    request: Request,
    video_id: str,
    session: Session,
    db: SessionDep,
    settings: SettingsDep,
    storage: ArchiveStorageDep,
) -> Response:
    detail = await console_service.video_detail(db, settings=settings, storage=storage, video_id=video_id)
    return page(request, "video.html", {"video": detail}, session=session, media_origins=detail.media_origins)


@router.post("/videos/{video_id}/rearchive")
async def rearchive(
    video_id: str, session: CheckedSession, db: SessionDep, settings: SettingsDep, upstreams: UpstreamsDep
) -> Response:
    outcome = await console_service.rearchive(db, settings=settings, upstreams=upstreams, video_id=video_id)
    logger.info(
        "console: re-archive of %s: %s, %d download(s) queued%s",
        video_id,
        outcome.result.value,
        outcome.queued,
        f" ({outcome.reason})" if outcome.reason else "",
    )
    return see_other(f"/console/videos/{video_id}", notice=console_service.REARCHIVE_NOTICES[outcome.result])


@router.post("/callbacks/{delivery_id}/retry")
async def retry_callback(delivery_id: int, session: CheckedSession, db: SessionDep) -> Response:
    video_id, queued = await console_service.retry_callback(db, delivery_id=delivery_id)
    logger.info("console: retry of callback delivery %d %s", delivery_id, "queued" if queued else "refused")
    return see_other(f"/console/videos/{video_id}", notice="retried" if queued else "not_retried")


@router.get("/webhooks")
async def webhooks(
    request: Request,
    session: Session,
    db: SessionDep,
    settings: SettingsDep,
    log: DeliveryLogDep,
    outcome: str | None = None,
    after: str | None = None,
) -> Response:
    listing = await console_service.webhook_page(db, settings=settings, log=log, outcome=outcome, after=after)
    return page(request, "webhooks.html", {"page": listing, "outcomes": console_service.TAP_OUTCOMES}, session=session)


@router.get("/callers")
async def callers(request: Request, session: Session, db: SessionDep, settings: SettingsDep) -> Response:
    views = await console_service.callers(db, settings=settings)
    return page(request, "callers.html", {"callers": views}, session=session)


# ----- wiring -------------------------------------------------------------------------------------


def install(app: FastAPI) -> None:
    """Mount the console (pages, static files) and its redirects. Its session keys and the webhook tap's
    log are in the app's `AppResources`; the app factory lists the `WebhookTap` middleware with the others."""
    app.include_router(router)
    # Public on purpose: the login page needs its stylesheet; these files hold no data.
    app.mount(STATIC_PATH, StaticFiles(directory=HERE / "static"), name="console-static")

    async def to_login(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, LoginRequired)
        query = {"next": exc.next_path} if exc.next_path and exc.next_path != HOME_PATH else {}
        return see_other(LOGIN_PATH, **query)

    async def csrf_refused(request: Request, exc: Exception) -> Response:
        body = "<!doctype html><title>Refused</title><p>This form has expired. Go back, reload the page and try again."
        return secure_headers(HTMLResponse(body, status_code=403))

    app.add_exception_handler(LoginRequired, to_login)
    app.add_exception_handler(CsrfRefused, csrf_refused)
