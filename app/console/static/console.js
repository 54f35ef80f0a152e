// The video table refreshes itself: every few seconds the page fetches its own rows (same filters and page)
// and swaps the table body. Paused while the tab is hidden; a lost session reloads into the login page.
"use strict";
(function () {
  const body = document.querySelector("[data-refresh-src]");
  if (!body) return;
  const source = body.getAttribute("data-refresh-src");
  const seconds = Math.max(1, Number(body.getAttribute("data-refresh-seconds")) || 5);
  const stamp = document.getElementById("refreshed");
  let busy = false;
  async function refresh() {
    if (busy || document.visibilityState !== "visible") return;
    busy = true;
    try {
      const response = await fetch(source, { credentials: "same-origin", cache: "no-store" });
      if (response.redirected || !response.ok) {
        if (response.redirected) window.location.reload();
        return;
      }
      const html = await response.text();
      // Keep keyboard focus where it was when the focused link is still in the new rows.
      const focused = document.activeElement && body.contains(document.activeElement)
        ? document.activeElement.getAttribute("href") : null;
      body.innerHTML = html;
      if (focused) {
        const again = body.querySelector('a[href="' + CSS.escape(focused) + '"]');
        if (again) again.focus();
      }
      if (stamp) stamp.textContent = "Updated " + new Date().toLocaleTimeString();
    } catch (error) {
      if (stamp) stamp.textContent = "Refresh failed; retrying.";
    } finally {
      busy = false;
    }
  }
  window.setInterval(refresh, seconds * 1000);
})();
