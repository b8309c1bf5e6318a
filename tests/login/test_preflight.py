"""A stale or unknown client fails in seconds, before the browser opens, not at the timeout."""

from __future__ import annotations

import time

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, follow_redirects
from tests.login.test_authorize import ScriptedServer, _authorize

pytestmark = pytest.mark.anyio


class NeverOpened:
    """A browser that must not be opened."""

    def __init__(self) -> None:
        self.calls = 0

    async def __call__(self, url: str) -> bool:
        self.calls += 1
        return True


async def test_an_unknown_client_id_fails_before_the_browser_in_seconds() -> None:
    """The embedded server does not know the client: ClientRejected at once, naming the client."""
    browser = NeverOpened()
    async with AuthorizationServer(registration=False) as server:
        started = time.monotonic()
        with pytest.raises(ol.ClientRejected) as info:
            await ol.authorize(
                server.issuer, client_id="forgotten-client", open_browser=browser, timeout=60
            )
        elapsed = time.monotonic() - started
    assert browser.calls == 0
    assert elapsed < 5
    assert info.value.client_id == "forgotten-client"
    assert info.value.status_code == 400
    assert "forgotten-client" in str(info.value)


async def test_a_client_registered_for_another_redirect_uri_fails_before_the_browser() -> None:
    """An exact-matching server that never registered this redirect URI shows an error page."""
    browser = NeverOpened()
    async with AuthorizationServer(exact_redirect_match=True) as server:
        client_id = server.register_client(["http://127.0.0.1:9/callback"])
        with pytest.raises(ol.ClientRejected):
            await ol.authorize(server.issuer, client_id=client_id, open_browser=browser)
    assert browser.calls == 0


@pytest.mark.parametrize(
    ("preflight", "error"),
    [
        pytest.param((500, None), None, id="server-error-page"),
        pytest.param(
            (302, "https://as.example/error?error=invalid_client&error_description=gone"),
            "invalid_client",
            id="redirect-to-error-page",
        ),
    ],
)
async def test_error_answers_to_the_preflight_are_client_rejected(
    preflight: tuple[int, str | None], error: str | None
) -> None:
    """An error page, or a redirect elsewhere carrying error=, means the user would be stuck."""
    server = ScriptedServer(preflight=preflight)
    browser = NeverOpened()
    with pytest.raises(ol.ClientRejected) as info:
        await _authorize(server, client_id="c1", open_browser=browser)
    assert info.value.error == error
    assert browser.calls == 0
    assert server.token_forms == []


@pytest.mark.parametrize(
    "preflight",
    [
        pytest.param((200, None), id="sign-in-page"),
        pytest.param((302, "https://as.example/login?next=1"), id="redirect-to-sign-in"),
    ],
)
async def test_a_sign_in_page_passes_the_preflight(preflight: tuple[int, str | None]) -> None:
    """A server that shows a sign-in page (or redirects to one) gets the browser as usual."""
    server = ScriptedServer(preflight=preflight)
    token = await _authorize(server, client_id="c1")
    assert token.access_token == "at-secret-value"


async def test_an_unreachable_authorization_endpoint_skips_the_preflight() -> None:
    """If this machine cannot reach the endpoint (the browser may), the login goes on."""
    server = ScriptedServer()
    handle = server.handle

    def unreachable(request: httpx2.Request) -> httpx2.Response:
        if request.url.path == "/authorize":
            raise httpx2.ConnectError("no route", request=request)
        return handle(request)

    server.handle = unreachable  # type: ignore[method-assign]
    token = await _authorize(server, client_id="c1")
    assert token.access_token == "at-secret-value"


async def test_an_immediate_authorization_response_passes() -> None:
    """A server that answers the request at once (auto-approve or deny) is not a stale client."""
    async with AuthorizationServer(deny=True) as server:
        with pytest.raises(ol.AuthorizationDenied):
            await ol.authorize(server.issuer, open_browser=follow_redirects)


async def test_the_preflight_logs_no_state(caplog: pytest.LogCaptureFixture) -> None:
    """httpx2 logs each request's URL at INFO; the preflight's is the authorization URL, so
    its query (this login's state, the PKCE challenge) is left out of that line. Other
    requests' lines are untouched."""
    import logging
    from urllib.parse import parse_qs, urlsplit

    caplog.set_level(logging.INFO)
    sent: list[str] = []

    async def browser(url: str) -> None:
        sent.append(url)
        await follow_redirects(url)

    async with AuthorizationServer() as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        token = await ol.authorize(
            server.issuer, client_id=client_id, scope="read", open_browser=browser
        )
    assert token.access_token
    (url,) = sent
    state = parse_qs(urlsplit(url).query)["state"][0]
    lines = [r.getMessage() for r in caplog.records if r.name == "httpx2"]
    endpoint = url.partition("?")[0]
    assert f"HTTP Request: GET {endpoint}?<query not logged>" in "\n".join(lines)
    assert not any(state in line for line in lines)
    assert any("/token" in line for line in lines)  # other requests are logged as before
