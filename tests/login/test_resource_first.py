"""Resource-first logins (MCP): from a protected resource's URL to its authorization server,
its scopes and a token, with credentials kept per server."""

from __future__ import annotations

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, ProtectedResource
from tests.login._support import Browser

pytestmark = pytest.mark.anyio


async def test_get_token_from_the_resource_challenge() -> None:
    """No issuer: the 401 challenge names the metadata; its server and challenged scope are used."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(server, required_scope="mcp:read") as mcp,
    ):
        store = ol.MemoryTokenStore()
        browser = Browser()
        token = await ol.get_token(resource=mcp.url, store=store, open_browser=browser)
        (issued,) = server.issued_tokens
        assert issued.scope == "mcp:read"
        assert issued.resource == (mcp.url,)  # RFC 8707 on the token request
        login = await store.load(ol.LoginKey(server.issuer, mcp.url))
        assert login is not None
        assert login.tokens is not None
        assert login.tokens.access_token == token.access_token
        again = await ol.get_token(resource=mcp.url, store=store, open_browser=browser)
    assert again.access_token == token.access_token
    assert browser.count == 1


@pytest.mark.parametrize(
    ("challenge_scope", "scopes_supported", "expected"),
    [
        pytest.param(True, ["x", "y"], "mcp:read", id="from-the-challenge"),
        pytest.param(False, ["x", "y"], "x y", id="from-scopes-supported"),
        pytest.param(False, None, None, id="none"),
    ],
)
async def test_scope_selection_through_the_well_known_fallback(
    challenge_scope: bool, scopes_supported: list[str] | None, expected: str | None
) -> None:
    """Without resource_metadata in the challenge, the well-known URL is found; scope per the spec."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(
            server,
            required_scope="mcp:read" if challenge_scope else None,
            scopes_supported=scopes_supported,
            challenge_scope=challenge_scope,
            advertise_metadata=False,
        ) as mcp,
    ):
        await ol.get_token(resource=mcp.url, store=ol.MemoryTokenStore(), open_browser=Browser())
        (issued,) = server.issued_tokens
    assert (issued.scope or None) == expected


async def test_a_resource_that_moves_servers_gets_its_own_login_there() -> None:
    """The resource moves from A to B: a new login and registration at B; A's client and tokens
    are never sent to B, and both logins stay in the store under their own issuer."""
    async with AuthorizationServer() as a, AuthorizationServer() as b, ProtectedResource(a) as mcp:
        store = ol.MemoryTokenStore()
        browser = Browser()
        auth = ol.TokenAuth(resource=mcp.url, store=store, open_browser=browser)
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            assert (await http.get(mcp.url)).status_code == 200
            mcp.server = b  # the resource now trusts B only
            reply = await http.get(mcp.url)
        assert reply.status_code == 200
        assert auth.issuer == b.issuer
        assert browser.count == 2
        (a_client,) = a.clients
        assert a_client not in b.clients
        a_tokens = {t.access_token for t in a.issued_tokens} | {
            t.refresh_token for t in a.issued_tokens
        }
        sent_to_b = " ".join(str(path) for _, path in b.requests)
        assert not any(token and token in sent_to_b for token in a_tokens)
        keys = {(login.issuer, login.resource) for login in await store.logins()}
    assert keys == {(a.issuer, mcp.url), (b.issuer, mcp.url)}


async def test_token_auth_resource_first_with_step_up() -> None:
    """TokenAuth(resource=...) alone: discovery, login, and a step-up when the resource wants more."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(server, required_scope="b") as mcp,
    ):
        browser = Browser()
        auth = ol.TokenAuth(
            resource=mcp.url, store=ol.MemoryTokenStore(), scope="a", open_browser=browser
        )
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            reply = await http.get(mcp.url)
    assert reply.status_code == 200
    assert [t.scope for t in server.issued_tokens] == ["a", "a b"]


async def test_no_issuer_and_no_resource_is_a_clear_type_error() -> None:
    """get_token() and TokenAuth() say what they need."""
    with pytest.raises(TypeError, match="resource="):
        await ol.get_token(store=ol.MemoryTokenStore())
    with pytest.raises(TypeError, match="resource="):
        ol.TokenAuth(store=ol.MemoryTokenStore())
