"""authorize(): the page the browser receives says what really happened.

Against the embedded :class:`oauth_loopback.testing.AuthorizationServer`: "Signed in" only once
a token arrived; "Sign-in failed — <reason>" when the token endpoint refuses the code; a 400
when the response names another issuer, also from a server that does not advertise RFC 9207.
The browser is a stand-in over real loopback HTTP, either like a launcher (it starts loading
and returns at once) or like automation (it returns with the loaded page).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc
import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer

pytestmark = pytest.mark.anyio


async def _load(url: str) -> tuple[int, str]:
    """Follow the authorization redirects to the receiver's page, loopback only."""

    async def only_loopback(request: httpx2.Request) -> None:
        assert request.url.host == "127.0.0.1", request.url

    async with httpx2.AsyncClient(
        trust_env=False, follow_redirects=True, timeout=20, event_hooks={"request": [only_loopback]}
    ) as client:
        response = await client.get(url)
    return response.status_code, response.text


class LauncherBrowser:
    """Like webbrowser.open: starts loading in the background, returns True at once."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.pages: list[tuple[int, str]] = []

    def __call__(self, url: str) -> bool:
        self._tg.start_soon(self._visit, url)
        return True

    async def _visit(self, url: str) -> None:
        self.pages.append(await _load(url))


class AutomationBrowser:
    """Like a headless driver: returns once the final page has loaded."""

    def __init__(self) -> None:
        self.pages: list[tuple[int, str]] = []

    async def __call__(self, url: str) -> bool:
        self.pages.append(await _load(url))
        return True


async def _login(
    server: AuthorizationServer, style: str, **kwargs: Any
) -> tuple[ol.Token | BaseException, list[tuple[int, str]]]:
    """Run authorize() with a browser of ``style``; return its token (or error) and pages."""
    outcome: ol.Token | BaseException
    async with anyio.create_task_group() as tg:
        browser = LauncherBrowser(tg) if style == "launcher" else AutomationBrowser()
        try:
            with anyio.fail_after(30):
                outcome = await ol.authorize(
                    server.issuer,
                    config=ol.CallbackConfig(app_name="Test App"),
                    open_browser=browser,
                    timeout=20,
                    **kwargs,
                )
        except ol.OAuthLoopbackError as exc:
            outcome = exc
    return outcome, browser.pages


STYLES = ["launcher", "automation"]


@pytest.mark.parametrize("style", STYLES)
async def test_signed_in_only_once_the_token_arrived(style: str) -> None:
    """A login that gets its token shows 'Signed in' (and the token is the one issued)."""
    async with AuthorizationServer() as server:
        token, pages = await _login(server, style)
        assert isinstance(token, ol.Token)
        assert server.issued_tokens
    assert [status for status, _ in pages] == [200]
    assert "Signed in" in pages[0][1]
    assert "Test App" in pages[0][1]


@pytest.mark.parametrize("style", STYLES)
@pytest.mark.parametrize("error", ["invalid_grant", "invalid_client"])
async def test_a_refused_token_request_says_sign_in_failed_with_the_reason(
    style: str, error: str
) -> None:
    """token_error=...: authorize raises TokenError, and the page says 'Sign-in failed — <why>'."""
    async with AuthorizationServer(token_error=error) as server:
        outcome, pages = await _login(server, style)
    assert isinstance(outcome, ol.TokenError)
    assert outcome.error == error
    ((status, page),) = pages
    assert status == 400
    assert "Signed in" not in page
    assert "Sign-in failed \N{EM DASH} the authorization server did not issue a token" in page
    assert error in page
    assert "Start the sign-in again from Test App" in page


@pytest.mark.parametrize("style", STYLES)
async def test_a_wrong_iss_is_refused_at_the_receiver(style: str) -> None:
    """wrong_iss=True (RFC 9207 advertised): IssuerMismatch, and the page is a 400, not 'Signed in'."""
    async with AuthorizationServer(wrong_iss=True) as server:
        outcome, pages = await _login(server, style)
    assert isinstance(outcome, ol.IssuerMismatch)
    ((status, page),) = pages
    assert status == 400
    assert "Signed in" not in page


def _without_iss_support(metadata: Mapping[str, Any]) -> dict[str, Any]:
    document = dict(metadata)
    document.pop("authorization_response_iss_parameter_supported", None)
    return document


@pytest.mark.parametrize("style", STYLES)
async def test_a_wrong_iss_is_refused_even_when_iss_is_not_advertised(style: str) -> None:
    """A server that does not advertise RFC 9207 but sends another iss: 400 page, IssuerMismatch,
    no token request."""
    async with AuthorizationServer(wrong_iss=True) as server:
        metadata = _without_iss_support(server.metadata)
        outcome, pages = await _login(server, style, metadata=metadata)
        assert not server.issued_tokens
    assert isinstance(outcome, ol.IssuerMismatch)
    ((status, page),) = pages
    assert status == 400
    assert "Signed in" not in page
    assert "discarded to protect your account" in page


@pytest.mark.parametrize("style", STYLES)
async def test_a_missing_iss_is_fine_when_not_advertised(style: str) -> None:
    """The control: without RFC 9207 in the metadata and no iss sent, the login completes."""
    async with AuthorizationServer(issue_iss=False) as server:
        token, pages = await _login(server, style)
    assert isinstance(token, ol.Token)
    assert pages[0][0] == 200
    assert "Signed in" in pages[0][1]


async def test_the_page_waits_for_the_token_exchange() -> None:
    """The browser's page arrives after the token request, not before it."""
    events: list[str] = []
    async with AuthorizationServer() as server:

        def on_step(name: str, detail: str) -> None:
            events.append(name)

        async with anyio.create_task_group() as tg:

            async def visit(url: str) -> None:
                await _load(url)
                events.append("page")

            def open_browser(url: str) -> bool:
                tg.start_soon(visit, url)
                return True

            await ol.authorize(
                server.issuer, open_browser=open_browser, on_step=on_step, timeout=20
            )
    assert events.index("page") > events.index("token")
