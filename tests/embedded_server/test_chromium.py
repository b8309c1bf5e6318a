"""Real-browser end-to-end: headless Chromium clicks through the embedded server's consent page.

Debian's Chromium (``/usr/bin/chromium``, never a downloaded browser) is driven by playwright's
sync API in a worker thread (``anyio.to_thread``), so these tests run on asyncio and on trio
while the event loop keeps serving the authorization server and the receiver. Without Chromium
they are skipped, except in CI (``CI=true``), where a missing browser is a failure.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import anyio
import anyio.to_thread
import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer

pytestmark = pytest.mark.anyio

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]
# Every playwright wait is bounded; a stuck browser fails the test instead of hanging it.
STEP_TIMEOUT_MS = 10_000


def _find_chromium() -> str | None:
    for candidate in ("/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture
def chromium() -> str:
    """Chromium's path; skip without it locally, fail without it in CI."""
    path = _find_chromium()
    missing = None
    if path is None:
        missing = "Debian's chromium is not installed (apt-get install -y chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            missing = "playwright is not installed (pip install -e '.[test]')"
    if missing is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{missing}; CI=true requires the real-browser tests to run.")
        pytest.skip(missing)
    assert path is not None
    return path


@dataclass
class BrowserVisit:
    """What the browser saw: the consent page heading, then where the redirect landed."""

    consent_heading: str
    final_url: str
    final_title: str
    final_text: str


def _click_through(chromium: str, flows: list[tuple[str, str]]) -> list[BrowserVisit]:
    """In a worker thread: for each (authorization URL, button), consent and follow through.

    One browser launch serves every flow (a fresh context each, so no cookies are shared);
    the launch is most of the cost. Set OAUTH_LOOPBACK_SCREENSHOTS=<dir> to keep a
    screenshot of each final page for a look.
    """
    from playwright.sync_api import sync_playwright

    shots = os.environ.get("OAUTH_LOOPBACK_SCREENSHOTS")
    visits = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=chromium, args=CHROMIUM_ARGS, headless=True, timeout=STEP_TIMEOUT_MS
        )
        try:
            for number, (url, button) in enumerate(flows):
                context = browser.new_context()
                page = context.new_page()
                page.set_default_timeout(STEP_TIMEOUT_MS)
                page.goto(url)
                heading = page.inner_text("h1")
                redirect_uri = parse_qs(urlsplit(url).query)["redirect_uri"][0]
                # The form posts to the server, which redirects (303) to the live receiver.
                with page.expect_navigation(url=f"{redirect_uri}?**"):
                    page.click(button)
                if shots:
                    page.screenshot(path=str(Path(shots) / f"oauth-loopback-e2e-{number}.png"))
                visits.append(
                    BrowserVisit(
                        consent_heading=heading,
                        final_url=page.url,
                        final_title=page.title(),
                        final_text=page.inner_text("body"),
                    )
                )
                context.close()
        finally:
            browser.close()
    return visits


def _authorization_url(
    server: AuthorizationServer, client_id: str, redirect_uri: str, state: str, verifier: str
) -> str:
    params = {
        "response_type": "code",
        "client_id": client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "scope": "read",
        "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256",
    }
    return f"{server.authorization_endpoint}?{urlencode(params)}"


async def test_browser_approve_gets_a_token_and_deny_gets_access_denied(chromium: str) -> None:
    """Chromium approves one login (code -> token) and denies another (AuthorizationDenied)."""
    async with (
        AuthorizationServer(auto_approve=False, scopes_supported=["read"]) as server,
        ol.open_receiver() as receiver,
    ):
        client_id = server.register_client(["http://127.0.0.1/callback"], client_name="E2E app")
        approved = receiver.expect(issuer=server.issuer)
        denied = receiver.expect(issuer=server.issuer)
        verifier = generate_token(48)
        redirect = receiver.redirect_uri
        flows = [
            (_authorization_url(server, client_id, redirect, approved.state, verifier), "#approve"),
            (_authorization_url(server, client_id, redirect, denied.state, verifier), "#deny"),
        ]
        ok, no = await anyio.to_thread.run_sync(_click_through, chromium, flows)

        # Approve: the receiver woke with a code and showed its success page.
        response = await approved.wait(timeout=10)
        assert ok.consent_heading == "Authorize E2E app?"
        assert ok.final_url.startswith(redirect + "?")
        assert ok.final_title == "Signed in"
        assert "you can close this tab" in ok.final_text
        assert response.code not in ok.final_text  # the page never shows the code
        assert response.iss == server.issuer
        async with httpx2.AsyncClient(trust_env=False, timeout=10) as http:
            reply = await http.post(
                server.token_endpoint,
                data={
                    "grant_type": "authorization_code",
                    "code": response.code,
                    "redirect_uri": redirect,
                    "client_id": client_id,
                    "code_verifier": verifier,
                },
            )
        assert reply.status_code == 200
        assert reply.json()["scope"] == "read"
        assert [t.access_token for t in server.issued_tokens] == [reply.json()["access_token"]]

        # Deny: the other login got the typed denial, the browser the cancellation page.
        with pytest.raises(ol.AuthorizationDenied) as caught:
            await denied.wait(timeout=10)
        assert caught.value.error == "access_denied"
        assert caught.value.iss == server.issuer
        assert no.final_url.startswith(redirect + "?")
        assert no.final_title == "Sign-in cancelled"
        assert "denied" in no.final_text
        assert len(server.issued_tokens) == 1
        assert server.requests == [
            ("GET", "/authorize"),
            ("POST", "/authorize"),
            ("GET", "/authorize"),
            ("POST", "/authorize"),
            ("POST", "/token"),
        ]
