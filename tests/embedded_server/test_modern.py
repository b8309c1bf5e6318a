"""The embedded server's DPoP-bound tokens (RFC 9449) and signed ID tokens (OpenID Connect),
exercised end to end by authorize(), get_token() and TokenAuth."""

from __future__ import annotations

import dataclasses

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback._login._dpop import DPoPKey
from oauth_loopback.testing import AuthorizationServer, ProtectedResource, follow_redirects

pytestmark = pytest.mark.anyio


async def test_id_tokens_are_signed_and_validated_across_a_key_rotation() -> None:
    """scope openid: a signed ID token with the nonce; after a rotation the new kid validates."""
    async with AuthorizationServer() as server:
        first = await ol.authorize(server.issuer, scope="openid", open_browser=follow_redirects)
        kid = server.rotate_signing_key(drop_old=True)
        second = await ol.authorize(server.issuer, scope="openid", open_browser=follow_redirects)
    for token in (first, second):
        assert token.id_token_claims is not None
        assert token.id_token_claims["sub"] == "test-user"
        assert token.id_token_claims["iss"] == server.issuer
    import json
    from base64 import urlsafe_b64decode

    header = str(second["id_token"]).split(".")[0]
    assert json.loads(urlsafe_b64decode(header + "=" * (-len(header) % 4)))["kid"] == kid


async def test_no_openid_no_id_token() -> None:
    """Without scope openid the server sends no ID token."""
    async with AuthorizationServer() as server:
        token = await ol.authorize(server.issuer, scope="read", open_browser=follow_redirects)
    assert "id_token" not in token
    assert token.id_token_claims is None


async def test_dpop_login_refresh_with_nonce_rotation_and_a_bound_resource() -> None:
    """Bound at login (one nonce retry), refreshed with a proof after the nonce changed, and
    used at a resource that demands its own nonce; as a bearer token it is refused."""
    async with (
        AuthorizationServer(dpop_nonce=True) as server,
        ProtectedResource(server, dpop_nonce=True) as mcp,
    ):
        store = ol.MemoryTokenStore()
        first = await ol.get_token(
            server.issuer, store=store, resource=mcp.url, open_browser=follow_redirects
        )
        assert first.token_type == "DPoP"
        assert first.dpop_key is not None
        assert server.dpop_refusals == ["nonce-missing"]
        login = await store.load(ol.LoginKey(server.issuer, mcp.url))
        assert login is not None
        assert login.tokens is not None
        await store.save(
            dataclasses.replace(login, tokens=dataclasses.replace(login.tokens, expires_at=0.0))
        )

        def no_browser(url: str) -> bool:
            raise AssertionError("a refresh must not open the browser")

        refreshed = await ol.get_token(
            server.issuer, store=store, resource=mcp.url, open_browser=no_browser
        )
        assert refreshed.access_token != first.access_token
        # A new process knows no nonce yet: one use_dpop_nonce answer, then the proof passes.
        assert server.dpop_refusals == ["nonce-missing", "nonce-missing"]
        auth = ol.TokenAuth(server.issuer, store=store, resource=mcp.url, open_browser=no_browser)
        async with httpx2.AsyncClient(auth=auth, trust_env=False) as http:
            reply = await http.get(mcp.url)
        async with httpx2.AsyncClient(trust_env=False) as http:
            as_bearer = await http.get(
                mcp.url, headers={"Authorization": f"Bearer {refreshed.access_token}"}
            )
    assert reply.status_code == 200
    assert [status for _, _, status in mcp.requests][-2:] == [200, 401]
    assert as_bearer.status_code == 401


async def _token_request(
    server: AuthorizationServer, form: dict[str, str], proof: str | None
) -> httpx2.Response:
    headers = {"DPoP": proof} if proof else {}
    async with httpx2.AsyncClient(trust_env=False) as http:
        reply: httpx2.Response = await http.post(server.token_endpoint, data=form, headers=headers)
    return reply


async def test_a_stolen_refresh_token_and_a_replayed_proof_are_refused() -> None:
    """Without the key, with another key, or with a proof used before: no new token."""
    async with AuthorizationServer(dpop=True) as server:
        token = await ol.authorize(server.issuer, open_browser=follow_redirects)
        assert token.dpop_key is not None
        assert token.client is not None
        refresh = {
            "grant_type": "refresh_token",
            "refresh_token": str(token.refresh_token),
            "client_id": token.client.client_id,
        }
        without_key = await _token_request(server, refresh, None)
        other_key = await _token_request(
            server, refresh, DPoPKey.generate().proof("POST", server.token_endpoint)
        )
        proof = token.dpop_key.proof("POST", server.token_endpoint)
        good = await _token_request(server, refresh, proof)
        replayed = await _token_request(
            server, {**refresh, "refresh_token": good.json()["refresh_token"]}, proof
        )
    assert without_key.status_code == 400
    assert without_key.json()["error"] == "invalid_dpop_proof"
    assert other_key.status_code == 400
    assert good.status_code == 200
    assert good.json()["token_type"] == "DPoP"
    assert replayed.status_code == 400
    assert server.dpop_refusals == ["missing", "jkt", "replay"]
