"""The console in a real headless Chromium against a real stack (simulator, API, worker, SeaweedFS).

Sign in with the keyboard, watch a render go from queued to archived in the self-refreshing table, play its
MP4 from the archive, find a rejected webhook, re-archive, retry a callback, sign out. A plain sync test:
Playwright's sync API runs its own loop, which must not meet pytest-asyncio's.

`VG_CONSOLE_SCREENSHOTS=docs/console pytest tests/e2e/test_console_browser.py` also writes a screenshot of
every page there (the committed ones in docs/console/ come from exactly this).
"""

from __future__ import annotations

import base64
import json
import os
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from app.dev.processes import free_port
from tests.e2e.helpers import sql, wait_for
from tests.support.stack import Stack

pytestmark = pytest.mark.e2e

ADMIN_KEY = "vg-admin-e2e-console-0123456789"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SHOTS = os.environ.get("VG_CONSOLE_SCREENSHOTS")
T = TypeVar("T")


def outside_playwright(work: Callable[[], T]) -> T:
    """Run `work` on another thread: Playwright's sync API keeps an event loop running on this one, and the
    stack's helpers (`sql`, `new_caller_key`) start their own with `asyncio.run`."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(work).result()


def query_rows(stack: Stack, query: str, *args: object) -> list[dict[str, Any]]:
    return outside_playwright(lambda: sql(stack, query, *args))


def screenshot(page: Page, name: str) -> None:
    if SHOTS:
        Path(SHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SHOTS) / f"{name}.png"), full_page=True)


def row(page: Page, video_id: str) -> Any:
    return page.locator(f'tr[data-video-id="{video_id}"]')


def reload_until(page: Page, check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.5)
        page.reload()


def test_an_operator_follows_a_render_through_the_console(private_stack: Any) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make browser)")
    closed_port = free_port()  # nothing listens there: the callback fails and waits for its next attempt
    with private_stack(
        workers=1,
        VG_ADMIN_API_KEY=ADMIN_KEY,
        VG_CONSOLE__REFRESH_SECONDS="1",
        VG_CALLBACKS__ALLOWED_DESTINATIONS='["127.0.0.1"]',
        VG_CALLBACKS__RETRY_SCHEDULE_SECONDS="[3600]",
        # Slow enough for the table to show the render queued before it moves on.
        VG_SIMULATOR__QUEUE_SECONDS="3",
        VG_SIMULATOR__RENDER_SECONDS="3",
    ) as stack:
        caller_key = stack.new_caller_key()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                run_the_console(stack, browser, caller_key, closed_port)
            finally:
                browser.close()


def run_the_console(stack: Stack, browser: Browser, caller_key: str, closed_port: int) -> None:
    console = f"{stack.api_url}/console"
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()

    # ----- no session: the login page; signing in with the keyboard only
    page.goto(f"{console}/videos")
    assert page.url.startswith(f"{console}/login")
    screenshot(page, "login")
    expect(page.get_by_label("Admin key")).to_be_focused()
    page.keyboard.type(ADMIN_KEY)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{console}/videos")
    [cookie] = [cookie for cookie in context.cookies() if cookie["name"] == "vg_console"]
    # Chromium keeps a Secure cookie over plain http on 127.0.0.1: loopback is a secure context.
    assert cookie["secure"] and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie
    assert cookie["path"] == "/console"

    # ----- a render appears queued, and the table refreshes itself until every variant is archived
    with httpx.Client(base_url=stack.api_url, headers={"authorization": f"Bearer {caller_key}"}) as api:
        created = api.post(
            "/v1/videos",
            files={
                "prompt": (None, "A paper boat on a pond at dawn"),
                "seconds": (None, "4"),
                "size": (None, "1280x720"),
                "callback_url": (None, f"http://127.0.0.1:{closed_port}/hook"),
            },
        )
        assert created.status_code == 200, created.text
        video_id = created.json()["id"]
        # A second render that upstream refuses (the simulator blocks the word): the table shows it failed.
        blocked = api.post("/v1/videos", files={"prompt": (None, "a forbidden scene"), "seconds": (None, "4")})
        assert blocked.status_code == 200, blocked.text
        blocked_id = blocked.json()["id"]
    page.reload()
    expect(row(page, video_id)).to_have_attribute("data-status", "queued")
    # No reload from here: only the page's own refresh can bring the new states in.
    expect(row(page, video_id).locator(".asset-archived")).to_have_count(3, timeout=60_000)
    expect(row(page, video_id)).to_have_attribute("data-status", "completed")
    expect(row(page, blocked_id)).to_have_attribute("data-status", "failed", timeout=30_000)
    screenshot(page, "videos")

    # ----- narrow screen: the page does not overflow; the table scrolls inside its own box
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    screenshot(page, "videos-narrow")
    page.set_viewport_size({"width": 1280, "height": 860})

    # ----- the video's page: MP4 playable from the archive, thumbnail and spritesheet shown
    row(page, video_id).get_by_role("link", name=video_id).click()
    page.wait_for_url(f"{console}/videos/{video_id}")
    page.wait_for_function("document.getElementById('player').readyState >= 2", timeout=30_000)
    for image in ("thumbnail", "spritesheet"):
        page.wait_for_function(f"document.getElementById('{image}').complete", timeout=15_000)
        assert page.evaluate(f"document.getElementById('{image}').naturalWidth") > 0, image
    expect(page.locator(".timeline")).to_contain_text("video archived")
    expect(page.locator(".timeline")).to_contain_text("webhook video.completed")
    page.set_viewport_size({"width": 375, "height": 800})
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    page.set_viewport_size({"width": 1280, "height": 860})

    # ----- the video.archived callback failed (nothing listens); retry it from the page
    reload_until(
        page,
        lambda: page.get_by_role("button", name="Retry now").count() > 0,
        timeout=30,
        what="a failed callback attempt",
    )
    expect(page.locator(".timeline")).to_contain_text("callback attempt 1")
    page.get_by_role("button", name="Retry now").click()
    expect(page.get_by_role("status")).to_contain_text("Callback retry queued")
    wait_for(
        lambda: (
            query_rows(stack, "SELECT attempts FROM callback_deliveries WHERE video_id = $1", video_id)[0]["attempts"]
            >= 2
        ),
        timeout=20,
        what="the retried callback's second attempt",
    )
    screenshot(page, "video")

    # ----- re-archive: every variant downloaded again
    page.get_by_role("button", name="Re-archive").click()
    expect(page.get_by_role("status")).to_contain_text("Re-archive queued")
    wait_for(
        lambda: (
            len(
                query_rows(
                    stack,
                    "SELECT 1 FROM archive_jobs WHERE video_id = $1 AND kind = 'download' AND state = 'succeeded'",
                    video_id,
                )
            )
            == 6
        ),
        timeout=60,
        what="the second archive of all three variants",
    )

    # ----- a forged webhook is rejected, and the Webhooks page says why, signature redacted
    webhook_id = f"wh_forged_{uuid.uuid4().hex[:8]}"
    forged_mac = base64.b64encode(b"not-the-real-hmac-of-this-body!!").decode()
    refused = httpx.post(
        f"{stack.api_url}/webhooks/openai",
        content=json.dumps({"id": "evt_forged", "type": "video.completed", "data": {"id": "video_x"}}),
        headers={
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": f"v1,{forged_mac}",
        },
    )
    assert refused.status_code == 401
    page.get_by_role("link", name="Webhooks").click()
    page.get_by_label("Outcome").select_option("rejected")
    page.get_by_role("button", name="Filter").click()
    delivery = page.locator("details.delivery", has_text=webhook_id)
    expect(delivery).to_contain_text("rejected")
    expect(delivery).to_contain_text("401")
    delivery.locator("summary").click()
    expect(delivery).to_contain_text("v1,[redacted]")
    assert forged_mac not in page.content()
    screenshot(page, "webhooks")

    # ----- callers: the render counted, the key shown by its prefix only
    page.get_by_role("link", name="Callers").click()
    expect(page.locator("section.caller").first).to_be_visible()
    assert caller_key not in page.content()
    expect(page.get_by_text(caller_key[:7] + "…").first).to_be_visible()
    screenshot(page, "callers")

    # ----- sign out: the cookie is gone and the pages send us back to the login
    page.get_by_role("button", name="Sign out").click()
    page.wait_for_url(f"{console}/login*")
    assert not [cookie for cookie in context.cookies() if cookie["name"] == "vg_console"]
    for path in ("/videos", f"/videos/{video_id}", "/webhooks", "/callers"):
        page.goto(f"{console}{path}")
        assert page.url.startswith(f"{console}/login"), path
    context.close()
