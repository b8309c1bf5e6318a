"""The embedded server's switches for staying-logged-in tests, checked on their own.

Requests are made by hand (httpx2 over real loopback sockets), independently of get_token(),
so that a bug in the client cannot hide one in the server.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7636 import create_s256_code_challenge

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, follow_redirects
from tests.login._support import Browser, document_host, no_browser

pytestmark = pytest.mark.anyio


@pytest.fixture
async def http() -> AsyncIterator[httpx2.AsyncClient]:
    async with httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=10) as client:
        yield client


async def _tokens(
    http: httpx2.AsyncClient, server: AuthorizationServer, client_id: str
) -> dict[str, object]:
    """One authorization code login by hand; the token response."""
    verifier = generate_token(48)
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        query = httpx2.QueryParams(
            response_type="code",
            client_id=client_id,
            redirect_uri=receiver.redirect_uri,
            state=pending.state,
            code_challenge=create_s256_code_challenge(verifier),
            code_challenge_method="S256",
        )
        await follow_redirects(f"{server.authorization_endpoint}?{query}")
        response = await pending.wait(timeout=5)
    reply = await http.post(
        server.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": response.code,
            "redirect_uri": receiver.redirect_uri,
            "client_id": client_id,
            "code_verifier": verifier,
        },
    )
    assert reply.status_code == 200
    body: dict[str, object] = reply.json()
    return body


async def _refresh(
    http: httpx2.AsyncClient, server: AuthorizationServer, client_id: str, token: object
) -> httpx2.Response:
    return await http.post(
        server.token_endpoint,
        data={"grant_type": "refresh_token", "client_id": client_id, "refresh_token": str(token)},
    )


async def test_reuse_detection_revokes_the_whole_family(http: httpx2.AsyncClient) -> None:
    """A spent refresh token presented again: invalid_grant, and every token of its family
    (including the newest refresh token) stops working."""
    async with AuthorizationServer(detect_refresh_token_reuse=True) as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        first = await _tokens(http, server, client_id)
        second = (await _refresh(http, server, client_id, first["refresh_token"])).json()
        reused = await _refresh(http, server, client_id, first["refresh_token"])
        assert reused.status_code == 400
        assert reused.json()["error"] == "invalid_grant"
        assert server.refresh_token_reuses == 1
        newest = await _refresh(http, server, client_id, second["refresh_token"])
        assert newest.status_code == 400
        assert [(t.revoked, t.access_token_valid) for t in server.issued_tokens] == [
            (True, False),
            (True, False),
        ]
        assert len({t.family for t in server.issued_tokens}) == 1


async def test_without_reuse_detection_only_the_spent_token_is_refused(
    http: httpx2.AsyncClient,
) -> None:
    """The default: a spent token is refused, its successor keeps working, nothing counted."""
    async with AuthorizationServer() as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        first = await _tokens(http, server, client_id)
        second = (await _refresh(http, server, client_id, first["refresh_token"])).json()
        assert (await _refresh(http, server, client_id, first["refresh_token"])).status_code == 400
        assert (await _refresh(http, server, client_id, second["refresh_token"])).status_code == 200
        assert server.refresh_token_reuses == 0
        assert [t.rotated for t in server.issued_tokens] == [True, True, False]


async def test_without_rotation_the_refresh_token_stays(http: httpx2.AsyncClient) -> None:
    """rotate_refresh_tokens=False: no new refresh token is sent (RFC 6749 §6) and the old
    one works again and again."""
    async with AuthorizationServer(rotate_refresh_tokens=False) as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        first = await _tokens(http, server, client_id)
        for _ in range(2):
            reply = await _refresh(http, server, client_id, first["refresh_token"])
            assert reply.status_code == 200
            assert "refresh_token" not in reply.json()
    with pytest.raises(ValueError, match="needs rotate_refresh_tokens=True"):
        AuthorizationServer(rotate_refresh_tokens=False, detect_refresh_token_reuse=True)


async def test_rfc7009_revocation_of_a_refresh_token(http: httpx2.AsyncClient) -> None:
    """POST /revoke with a refresh token: 200, then the refresh and its access token fail."""
    async with AuthorizationServer() as server:
        assert server.metadata["revocation_endpoint"] == server.revocation_endpoint
        client_id = server.register_client(["http://127.0.0.1/callback"])
        tokens = await _tokens(http, server, client_id)
        assert server.revocation_endpoint is not None
        reply = await http.post(
            server.revocation_endpoint,
            data={"token": tokens["refresh_token"], "client_id": client_id},
        )
        assert reply.status_code == 200
        assert (await _refresh(http, server, client_id, tokens["refresh_token"])).status_code == 400
        resource = await http.get(
            server.resource_url, headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
        assert resource.status_code == 401
        assert 'error="invalid_token"' in resource.headers["www-authenticate"]
        unknown = await http.post(
            server.revocation_endpoint, data={"token": "never-issued", "client_id": client_id}
        )
        assert unknown.status_code == 200  # RFC 7009 §2.2: an unknown token is no error


async def test_revoking_an_access_token_leaves_the_refresh_token(
    http: httpx2.AsyncClient,
) -> None:
    """revoke_token(access) makes the resource answer 401; the refresh token still works."""
    async with AuthorizationServer() as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        tokens = await _tokens(http, server, client_id)
        bearer = {"Authorization": f"Bearer {tokens['access_token']}"}
        ok = await http.get(server.resource_url, headers=bearer)
        assert ok.status_code == 200
        assert ok.json() == {"sub": "test-user", "client_id": client_id, "scope": ""}
        assert server.revoke_token(str(tokens["access_token"]))
        assert not server.revoke_token("never-issued")
        assert (await http.get(server.resource_url, headers=bearer)).status_code == 401
        assert (await _refresh(http, server, client_id, tokens["refresh_token"])).status_code == 200
        bare = await http.get(server.resource_url)
        assert bare.status_code == 401
        assert "error=" not in bare.headers["www-authenticate"]


async def test_short_token_lifetime_makes_every_call_refresh(tmp_path: Path) -> None:
    """token_lifetime=30 is inside get_token()'s one-minute leeway: each call refreshes."""
    async with AuthorizationServer(token_lifetime=30) as server:
        store = ol.FileTokenStore(tmp_path)
        first = await ol.get_token(server.issuer, store=store, open_browser=Browser())
        assert first.expires_in is not None
        assert 25 <= first.expires_in <= 30
        for _ in range(2):
            await ol.get_token(server.issuer, store=store, open_browser=no_browser)
        assert [t.grant_type for t in server.issued_tokens] == [
            "authorization_code",
            "refresh_token",
            "refresh_token",
        ]
        assert {t.expires_in for t in server.issued_tokens} == {30}


async def test_registration_limit_answers_429(http: httpx2.AsyncClient) -> None:
    """After registration_limit clients, registration answers 429 with Retry-After."""
    async with AuthorizationServer(registration_limit=2) as server:
        assert server.registration_endpoint is not None
        body = {
            "redirect_uris": ["http://127.0.0.1/callback"],
            "token_endpoint_auth_method": "none",
        }
        statuses = [
            (await http.post(server.registration_endpoint, json=body)).status_code for _ in range(2)
        ]
        refused = await http.post(server.registration_endpoint, json=body)
        assert statuses == [201, 201]
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "3600"
        assert refused.json()["error"] == "too_many_requests"
        assert server.registrations_refused == 1
        assert len(server.clients) == 2
    with pytest.raises(ValueError, match="registration_limit"):
        AuthorizationServer(registration_limit=-1)


async def test_documents_are_advertised_and_fetched_per_authorization(
    http: httpx2.AsyncClient,
) -> None:
    """client_id_metadata_documents=True: advertised, and a URL client_id is fetched."""
    async with (
        document_host() as host,
        AuthorizationServer(client_id_metadata_documents=True) as server,
    ):
        assert server.metadata["client_id_metadata_document_supported"] is True
        url = host.url("/c.json")
        host.serve(
            "/c.json",
            {
                "client_id": url,
                "client_name": "Doc client",
                "redirect_uris": ["http://127.0.0.1/callback"],
                "token_endpoint_auth_method": "none",
                "grant_types": ["authorization_code", "refresh_token"],
            },
        )
        tokens = await _tokens(http, server, url)
        assert tokens["access_token"]
        assert server.metadata_document_fetches == [url]
        client = server.clients[url]
        assert client.metadata_document
        assert not client.dynamic
        assert client.client_name == "Doc client"


@pytest.mark.parametrize(
    ("document", "why"),
    [
        pytest.param({"client_secret": "s"}, "shared secret", id="secret"),
        pytest.param({"redirect_uris": ["https://evil.example/cb"]}, "loopback", id="redirect"),
        pytest.param({"token_endpoint_auth_method": "private_key_jwt"}, "only", id="method"),
    ],
)
async def test_unusable_documents_get_an_error_page(
    http: httpx2.AsyncClient, document: dict[str, object], why: str
) -> None:
    """A document the server cannot use is refused with a page naming why, never a redirect."""
    async with (
        document_host() as host,
        AuthorizationServer(client_id_metadata_documents=True) as server,
    ):
        url = host.url("/c.json")
        host.serve(
            "/c.json",
            {"client_id": url, "redirect_uris": ["http://127.0.0.1/callback"], **document},
        )
        reply = await http.get(
            server.authorization_endpoint,
            params={"response_type": "code", "client_id": url, "state": "s"},
        )
        assert reply.status_code == 400
        assert why in reply.text
        assert "location" not in reply.headers


async def test_documents_off_by_default(http: httpx2.AsyncClient) -> None:
    """Without the switch nothing is advertised and a URL client_id is just unknown."""
    async with document_host() as host, AuthorizationServer() as server:
        assert "client_id_metadata_document_supported" not in server.metadata
        reply = await http.get(
            server.authorization_endpoint,
            params={"response_type": "code", "client_id": host.url("/c.json"), "state": "s"},
        )
        assert reply.status_code == 400
        assert host.fetched == []
