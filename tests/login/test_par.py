"""Pushed authorization requests (RFC 9126): authorize() pushes when offered, the embedded server
implements the endpoint, and the browser's URL carries only client_id and request_uri."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlsplit

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, follow_redirects

pytestmark = pytest.mark.anyio


class Browser:
    """follow_redirects, remembering the URLs it was sent to."""

    def __init__(self) -> None:
        self.urls: list[str] = []

    async def __call__(self, url: str) -> str:
        self.urls.append(url)
        return await follow_redirects(url)


@pytest.mark.parametrize("require", [False, True], ids=["offered", "required"])
async def test_offered_or_required_par_pushes_and_the_browser_sees_only_a_request_uri(
    require: bool,
) -> None:
    """The front-channel URL holds client_id and request_uri only: no PKCE, state or redirect URI."""
    browser = Browser()
    async with AuthorizationServer(par=True, require_par=require) as server:
        token = await ol.authorize(
            server.issuer, scope="read", resource="https://mcp.example/", open_browser=browser
        )
        pushed = [
            path for method, path in server.requests if method == "POST" and path.endswith("/par")
        ]
    assert token.access_token
    assert len(pushed) == 1
    (url,) = browser.urls
    params = dict(parse_qsl(urlsplit(url).query))
    assert set(params) == {"client_id", "request_uri"}
    assert params["request_uri"].startswith("urn:ietf:params:oauth:request_uri:")


async def test_without_par_nothing_is_pushed() -> None:
    """A server that offers no PAR gets the usual front-channel request (PKCE in the URL)."""
    browser = Browser()
    async with AuthorizationServer() as server:
        await ol.authorize(server.issuer, open_browser=browser)
        assert not any(path.endswith("/par") for _, path in server.requests)
    assert "code_challenge" in dict(parse_qsl(urlsplit(browser.urls[0]).query))


async def test_par_false_skips_an_offered_endpoint() -> None:
    """par=False sends the request through the browser when the server only offers PAR."""
    browser = Browser()
    async with AuthorizationServer(par=True) as server:
        await ol.authorize(server.issuer, open_browser=browser, par=False)
    assert "code_challenge" in dict(parse_qsl(urlsplit(browser.urls[0]).query))


async def test_par_false_against_a_server_that_requires_it_fails_before_the_browser() -> None:
    """Refusing PAR where it is required is an UnsupportedServer naming the fix; no browser opens."""
    browser = Browser()
    async with AuthorizationServer(require_par=True) as server:
        with pytest.raises(ol.UnsupportedServer, match="par=None"):
            await ol.authorize(server.issuer, open_browser=browser, par=False)
    assert browser.urls == []


async def test_par_true_against_a_server_without_it_is_refused() -> None:
    """par=True insists: a server without the endpoint is an UnsupportedServer."""
    async with AuthorizationServer() as server:
        with pytest.raises(ol.UnsupportedServer, match="pushed_authorization_request_endpoint"):
            await ol.authorize(server.issuer, open_browser=follow_redirects, par=True)


async def test_a_refused_push_is_a_typed_error_naming_the_fix() -> None:
    """The server's refusal of the pushed request (a bad scope here) is PushedAuthorizationError."""
    async with AuthorizationServer(par=True, scopes_supported=["read"]) as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        with pytest.raises(ol.PushedAuthorizationError) as info:
            await ol.authorize(
                server.issuer, client_id=client_id, scope="admin", open_browser=follow_redirects
            )
    assert info.value.error == "invalid_scope"
    assert info.value.status_code == 400
    assert "par=False" in str(info.value)


async def test_a_request_uri_is_single_use_and_bound_to_its_client() -> None:
    """Replaying the browser's URL, or presenting the request_uri as another client, is refused."""
    browser = Browser()
    async with AuthorizationServer(par=True) as server:
        await ol.authorize(server.issuer, open_browser=browser)
        (url,) = browser.urls
        async with httpx2.AsyncClient() as http:
            replay = await http.get(url)
            other = url.replace("client_id=", "client_id=someone-else&x=")
            stolen = await http.get(other)
    assert replay.status_code == 400
    assert b"already used" in replay.content
    assert stolen.status_code == 400
