"""TokenAuth: bearer tokens from the store on every request, renewed once on a 401.

The resource server is the embedded server's ``resource_url`` (RFC 6750: 401 with
``error="invalid_token"`` for an unknown, expired or revoked token), over real sockets.
"""

from __future__ import annotations

from pathlib import Path

import anyio
import anyio.to_thread
import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer
from tests.login._support import Browser, grants, no_browser

pytestmark = pytest.mark.anyio


async def test_requests_carry_the_stored_bearer_token(tmp_path: Path) -> None:
    """The first request logs in; later ones reuse the stored token (no browser)."""
    async with AuthorizationServer() as server:
        browser = Browser()
        auth = ol.TokenAuth(server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=browser)
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            for _ in range(3):
                reply = await http.get(server.resource_url)
                assert reply.status_code == 200
                assert reply.json()["client_id"] == server.issued_tokens[0].client_id
        assert browser.count == 1
        assert grants(server) == ["authorization_code"]


async def test_a_401_refreshes_once_and_resends_without_a_browser(tmp_path: Path) -> None:
    """An access token the resource server refuses (revoked early) is refreshed and the
    request sent again; the body goes out again too."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, open_browser=Browser())
        assert server.revoke_token(server.issued_tokens[0].access_token)
        auth = ol.TokenAuth(server.issuer, store=store, open_browser=no_browser)
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            reply = await http.get(server.resource_url)
        assert reply.status_code == 200
        assert grants(server) == ["authorization_code", "refresh_token"]
        assert reply.json()["client_id"] == server.issued_tokens[1].client_id


async def test_a_401_logs_in_again_only_when_the_refresh_fails(tmp_path: Path) -> None:
    """With the refresh token revoked too, the 401 leads to one browser login."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, open_browser=Browser())
        refresh_token = server.issued_tokens[0].refresh_token
        assert refresh_token is not None
        server.revoke_token(refresh_token)  # takes the access token with it (RFC 7009 §2.1)
        browser = Browser()
        auth = ol.TokenAuth(server.issuer, store=store, open_browser=browser)
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            reply = await http.get(server.resource_url)
        assert reply.status_code == 200
        assert browser.count == 1
        assert grants(server) == ["authorization_code", "authorization_code"]


async def test_a_second_401_is_returned_not_retried(tmp_path: Path) -> None:
    """A resource that refuses every token gets two requests, then the caller sees the 401."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, open_browser=Browser())
        seen: list[str] = []

        def refuse(request: httpx2.Request) -> httpx2.Response:
            seen.append(request.headers["authorization"])
            return httpx2.Response(
                401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'}
            )

        auth = ol.TokenAuth(server.issuer, store=store, open_browser=no_browser)
        async with httpx2.AsyncClient(auth=auth, transport=httpx2.MockTransport(refuse)) as http:
            reply = await http.post("https://api.example/thing", content=b"payload")
        assert reply.status_code == 401
        first, second = (t.access_token for t in server.issued_tokens)
        assert seen == [f"Bearer {first}", f"Bearer {second}"]


async def test_concurrent_401s_refresh_once(tmp_path: Path) -> None:
    """Ten requests refused at once renew the token once: the others find it in the store."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, open_browser=Browser())
        server.revoke_token(server.issued_tokens[0].access_token)
        auth = ol.TokenAuth(server.issuer, store=store, open_browser=no_browser)
        statuses: list[int] = []
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:

            async def one() -> None:
                statuses.append((await http.get(server.resource_url)).status_code)

            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    for _ in range(10):
                        tg.start_soon(one)
        assert statuses == [200] * 10
        assert grants(server) == ["authorization_code", "refresh_token"]


async def test_a_blocking_client_works_from_a_thread_without_a_loop(tmp_path: Path) -> None:
    """With httpx2.Client the token lookups run in their own short event loop."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, open_browser=Browser())
        server.revoke_token(server.issued_tokens[0].access_token)
        auth = ol.TokenAuth(server.issuer, store=ol.FileTokenStore(tmp_path))

        def blocking() -> int:
            with httpx2.Client(auth=auth, trust_env=False) as http:
                status: int = http.get(server.resource_url).status_code
                return status

        assert await anyio.to_thread.run_sync(blocking) == 200
        assert grants(server) == ["authorization_code", "refresh_token"]


async def test_a_blocking_client_inside_an_event_loop_is_refused() -> None:
    """A blocking client on the event loop's own thread gets an error naming AsyncClient."""
    auth = ol.TokenAuth("https://as.example", store=ol.MemoryTokenStore())
    with httpx2.Client(
        auth=auth, transport=httpx2.MockTransport(lambda r: httpx2.Response(200))
    ) as http:
        with pytest.raises(ol.OAuthLoopbackError, match="AsyncClient"):
            http.get("https://api.example/")


def test_repr_shows_no_secret() -> None:
    """repr(TokenAuth) names the issuer and resource only."""
    auth = ol.TokenAuth(
        "https://as.example", store=ol.MemoryTokenStore(), client_id="c", client_secret="SECRET-x"
    )
    assert "SECRET-x" not in repr(auth)
    assert "https://as.example" in repr(auth)
