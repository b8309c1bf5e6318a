"""oauth_loopback.testing.ProtectedResource: an MCP-style resource that answers as the spec says."""

from __future__ import annotations

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback._login._resource import discover_resource, probe, select_scope
from oauth_loopback.testing import AuthorizationServer, ProtectedResource, follow_redirects

pytestmark = pytest.mark.anyio


async def _token(server: AuthorizationServer, resource: str, scope: str) -> str:
    token = await ol.authorize(
        server.issuer, scope=scope, resource=resource, open_browser=follow_redirects
    )
    return token.access_token


async def test_without_a_token_the_resource_challenges_with_its_metadata() -> None:
    """401 names resource_metadata and the required scope; the metadata names the server."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(server, required_scope="mcp:read") as mcp,
    ):
        async with httpx2.AsyncClient() as http:
            reply = await http.get(mcp.url)
            assert reply.status_code == 401
            challenge = reply.headers["www-authenticate"]
            assert challenge == f'Bearer scope="mcp:read", resource_metadata="{mcp.metadata_url}"'
            document = (await http.get(mcp.metadata_url)).json()
    assert document["resource"] == mcp.url
    assert document["authorization_servers"] == [server.issuer]


async def test_a_good_token_is_accepted_and_a_missing_scope_asks_for_step_up() -> None:
    """A token with the scope gets 200; one without it gets 403 insufficient_scope with the scope."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(server, required_scope="mcp:write") as mcp,
    ):
        weak = await _token(server, mcp.url, "mcp:read")
        strong = await _token(server, mcp.url, "mcp:read mcp:write")
        async with httpx2.AsyncClient() as http:
            denied = await http.get(mcp.url, headers={"Authorization": f"Bearer {weak}"})
            allowed = await http.get(mcp.url, headers={"Authorization": f"Bearer {strong}"})
    assert denied.status_code == 403
    assert 'error="insufficient_scope"' in denied.headers["www-authenticate"]
    assert 'scope="mcp:write"' in denied.headers["www-authenticate"]
    assert allowed.status_code == 200
    assert allowed.json()["ok"] is True


async def test_a_token_for_another_resource_or_an_unknown_one_is_refused() -> None:
    """RFC 8707: a token issued for another resource is invalid here; so is a made-up one."""
    async with AuthorizationServer() as server, ProtectedResource(server) as mcp:
        other = await _token(server, "https://elsewhere.example/mcp", "mcp:read")
        async with httpx2.AsyncClient() as http:
            for value in (other, "made-up"):
                reply = await http.get(mcp.url, headers={"Authorization": f"Bearer {value}"})
                assert reply.status_code == 401
                assert 'error="invalid_token"' in reply.headers["www-authenticate"]


async def test_discovery_from_the_challenge_and_from_the_well_known_url() -> None:
    """The resource-first building blocks find the server through the challenge, or without it."""
    async with AuthorizationServer() as server:
        for advertise in (True, False):
            async with (
                ProtectedResource(
                    server, scopes_supported=["mcp:read"], advertise_metadata=advertise
                ) as mcp,
                httpx2.AsyncClient() as http,
            ):
                challenge = await probe(http, mcp.url)
                assert challenge is not None
                assert (challenge.resource_metadata is not None) is advertise
                metadata = await discover_resource(http, mcp.url, challenge=challenge)
                assert metadata.issuer == server.issuer
                assert select_scope(challenge, metadata) == "mcp:read"


async def test_metadata_for_another_resource_is_refused_by_discovery() -> None:
    """A resource whose metadata speaks for someone else is not trusted (RFC 9728 §3.3)."""
    async with (
        AuthorizationServer() as server,
        ProtectedResource(server, metadata_resource="https://evil.example/mcp") as mcp,
        httpx2.AsyncClient() as http,
    ):
        with pytest.raises(ol.ResourceDiscoveryError, match="not of"):
            await discover_resource(http, mcp.url)
