"""Headless Chromium, once: the real page a real browser shows when the token exchange fails.

``authorize()`` with its *default* launcher, against ``AuthorizationServer(token_error=
"invalid_grant")``: ``webbrowser.open`` is handed the private ``file://`` redirect page, and
Chromium (Debian's ``/usr/bin/chromium``, driven by playwright in the launcher's worker thread)
opens it, follows its meta refresh to the authorization server, is redirected to the receiver,
and shows the held page once the exchange has failed: "Sign-in failed", never "Signed in".
"""

from __future__ import annotations

import threading
import webbrowser
from dataclasses import dataclass

import anyio
import anyio.to_thread
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer
from tests.embedded_server.test_chromium import CHROMIUM_ARGS, STEP_TIMEOUT_MS, chromium

pytestmark = pytest.mark.anyio

__all__ = ["chromium"]  # the fixture, shared with tests/embedded_server/test_chromium.py


@dataclass
class Seen:
    first_url: str
    final_url: str
    title: str
    text: str


def _chromium_opens(executable: str, url: str, seen: list[Seen]) -> bool:
    """What webbrowser.open does here: Chromium loads ``url`` and whatever it leads to."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True, timeout=STEP_TIMEOUT_MS
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(STEP_TIMEOUT_MS)
            # The file page refreshes to the authorization server, which redirects (302) to
            # the receiver; wait for that last page (held until the exchange is over).
            with page.expect_navigation(url="http://127.0.0.1:*/callback?**"):
                page.goto(url)
            page.wait_for_load_state("load")
            seen.append(Seen(url, page.url, page.title(), page.inner_text("body")))
        finally:
            browser.close()
    return True


async def test_chromium_shows_sign_in_failed_when_the_token_is_refused(
    chromium: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real Chromium, default launcher: the page says 'Sign-in failed — … invalid_grant …'."""
    seen: list[Seen] = []
    done = threading.Event()

    def open_in_chromium(url: str) -> bool:
        try:
            return _chromium_opens(chromium, url, seen)
        finally:
            done.set()

    monkeypatch.setattr(webbrowser, "open", open_in_chromium)
    async with AuthorizationServer(token_error="invalid_grant") as server:
        with pytest.raises(ol.TokenError):
            await ol.authorize(
                server.issuer, config=ol.CallbackConfig(app_name="Chromium Test"), timeout=30
            )
        # The launcher's thread closes the browser after the page; wait for it, bounded.
        assert await anyio.to_thread.run_sync(done.wait, 30)
    (visit,) = seen
    assert visit.first_url.startswith("file:///")  # the private redirect page, not the URL
    assert "state=" not in visit.first_url
    assert visit.title == "Sign-in failed"
    assert "Signed in" not in visit.text
    assert "Sign-in failed \N{EM DASH} the authorization server did not issue a token" in visit.text
    assert "invalid_grant" in visit.text
    assert "Start the sign-in again from Chromium Test" in visit.text
