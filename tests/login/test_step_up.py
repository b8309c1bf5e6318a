"""TokenAuth against protected resources: 403 insufficient_scope steps up with the union of the
scopes (capped), and DPoP-bound logins are stored with their key, refreshed and used with proofs."""

from __future__ import annotations

from pathlib import Path

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, ProtectedResource
from tests.login._support import Browser

pytestmark = pytest.mark.anyio


async def test_insufficient_scope_steps_up_with_the_union_of_scopes(tmp_path: Path) -> None:
    """Granted 'a', the resource wants 'b': one more browser login for 'a b', then 200."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(server, required_scope="b") as mcp,
    ):
        browser = Browser()
        auth = ol.TokenAuth(
            server.issuer,
            store=ol.FileTokenStore(tmp_path),
            scope="a",
            resource=mcp.url,
            open_browser=browser,
        )
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            reply = await http.get(mcp.url)
            again = await http.get(mcp.url)
    assert reply.status_code == 200
    assert again.status_code == 200
    assert browser.count == 2  # the first login, and the one step-up
    assert [t.scope for t in server.issued_tokens] == ["a", "a b"]
    assert auth.scope == "a b"
    statuses = [status for _, _, status in mcp.requests]
    assert statuses == [403, 200, 200]


async def test_step_up_is_capped_and_names_the_scopes(tmp_path: Path) -> None:
    """A resource that always wants more ends in InsufficientScope after MAX_STEP_UPS logins."""
    calls = {"n": 0}

    def greedy(request: httpx2.Request) -> httpx2.Response:
        calls["n"] += 1
        scope = f"more{calls['n']}"
        challenge = f'Bearer error="insufficient_scope", scope="{scope}"'
        return httpx2.Response(403, headers={"WWW-Authenticate": challenge})

    async with AuthorizationServer() as server:
        browser = Browser()
        auth = ol.TokenAuth(
            server.issuer, store=ol.MemoryTokenStore(), scope="a", open_browser=browser
        )
        async with httpx2.AsyncClient(auth=auth, transport=httpx2.MockTransport(greedy)) as http:
            with pytest.raises(ol.InsufficientScope) as info:
                await http.get("https://resource.example/api")
    from oauth_loopback._login._auth import MAX_STEP_UPS

    assert browser.count == 1 + MAX_STEP_UPS
    assert info.value.challenged == f"more{MAX_STEP_UPS + 1}"
    assert info.value.asked == "a more1 more2"
    assert "more3" in str(info.value)


async def test_a_403_without_insufficient_scope_is_returned_as_is(tmp_path: Path) -> None:
    """Only insufficient_scope triggers a step-up; another 403 reaches the caller untouched."""

    def forbidden(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(403, headers={"WWW-Authenticate": 'Bearer error="access_denied"'})

    async with AuthorizationServer() as server:
        browser = Browser()
        auth = ol.TokenAuth(server.issuer, store=ol.MemoryTokenStore(), open_browser=browser)
        async with httpx2.AsyncClient(auth=auth, transport=httpx2.MockTransport(forbidden)) as http:
            reply = await http.get("https://resource.example/api")
    assert reply.status_code == 403
    assert browser.count == 1
