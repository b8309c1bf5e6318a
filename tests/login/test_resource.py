"""RFC 9728 protected-resource discovery and the MCP scope rules (oauth_loopback._login._resource)."""

from __future__ import annotations

import pickle
from typing import Any

import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback._login._resource import (
    Challenge,
    bearer_challenge,
    check_resource,
    discover_resource,
    merge_scopes,
    probe,
    resource_metadata_urls,
    select_scope,
)

RESOURCE = "https://mcp.example.com/public/mcp"
PRM_PATH = "https://mcp.example.com/.well-known/oauth-protected-resource/public/mcp"
PRM_ROOT = "https://mcp.example.com/.well-known/oauth-protected-resource"


def _prm(**overrides: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "resource": RESOURCE,
        "authorization_servers": ["https://as.example.com"],
        "scopes_supported": ["mcp:read", "mcp:write"],
    }
    document.update(overrides)
    return {k: v for k, v in document.items() if v is not None}


def _client(routes: dict[str, httpx2.Response], seen: list[str]) -> httpx2.AsyncClient:
    def handle(request: httpx2.Request) -> httpx2.Response:
        url = str(request.url)
        seen.append(url)
        return routes.get(url, httpx2.Response(404))

    return httpx2.AsyncClient(transport=httpx2.MockTransport(handle))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(
            'Bearer resource_metadata="https://r.example/.well-known/oauth-protected-resource", scope="a b"',
            Challenge(
                "bearer",
                scope="a b",
                resource_metadata="https://r.example/.well-known/oauth-protected-resource",
            ),
            id="metadata-and-scope",
        ),
        pytest.param(
            'Bearer error="insufficient_scope", scope="files:write", error_description="need write"',
            Challenge(
                "bearer",
                error="insufficient_scope",
                scope="files:write",
                error_description="need write",
            ),
            id="insufficient-scope",
        ),
        pytest.param('Basic realm="x", Bearer', Challenge("bearer"), id="second-challenge"),
        pytest.param('DPoP algs="ES256"', Challenge("dpop"), id="dpop"),
        pytest.param('Basic realm="x"', None, id="no-bearer"),
        pytest.param("", None, id="empty"),
    ],
)
def test_bearer_challenge_is_read_from_www_authenticate(
    value: str, expected: Challenge | None
) -> None:
    """The first Bearer/DPoP challenge and its RFC 6750 / RFC 9728 parameters are read exactly."""
    assert bearer_challenge([value] if value else []) == expected
    assert (
        bearer_challenge(httpx2.Headers({"WWW-Authenticate": value} if value else {})) == expected
    )


@pytest.mark.parametrize(
    ("resource", "urls"),
    [
        pytest.param(RESOURCE, [PRM_PATH, PRM_ROOT], id="path-then-root"),
        pytest.param("https://mcp.example.com/", [PRM_ROOT], id="root-only"),
        pytest.param("https://mcp.example.com", [PRM_ROOT], id="no-path"),
        pytest.param(
            "http://127.0.0.1:8000/mcp/",
            [
                "http://127.0.0.1:8000/.well-known/oauth-protected-resource/mcp",
                "http://127.0.0.1:8000/.well-known/oauth-protected-resource",
            ],
            id="trailing-slash",
        ),
    ],
)
def test_well_known_urls_in_the_spec_order(resource: str, urls: list[str]) -> None:
    """RFC 9728 §3.1: the path-aware well-known URL first, then the root."""
    assert resource_metadata_urls(resource) == urls


@pytest.mark.parametrize(
    ("declared", "resource", "ok"),
    [
        pytest.param(RESOURCE, RESOURCE, True, id="identical"),
        pytest.param("https://mcp.example.com/public", RESOURCE, True, id="parent-path"),
        pytest.param("https://mcp.example.com/", RESOURCE, True, id="origin-root"),
        pytest.param("https://mcp.example.com/pub", RESOURCE, False, id="partial-segment"),
        pytest.param("https://evil.example/public/mcp", RESOURCE, False, id="other-host"),
        pytest.param("http://mcp.example.com/public/mcp", RESOURCE, False, id="other-scheme"),
        pytest.param("https://mcp.example.com:8443/public/mcp", RESOURCE, False, id="other-port"),
        pytest.param(RESOURCE + "/deeper", RESOURCE, False, id="child-path"),
    ],
)
def test_metadata_speaks_only_for_its_own_resource(declared: str, resource: str, ok: bool) -> None:
    """RFC 9728 §3.3: the declared resource is the URL itself or a same-origin parent path."""
    assert check_resource(declared, resource) is ok


@pytest.mark.anyio
async def test_discovery_uses_the_challenge_url_first() -> None:
    """The 401's resource_metadata URL is fetched before any well-known URL."""
    seen: list[str] = []
    url = "https://mcp.example.com/custom/prm.json"
    async with _client({url: httpx2.Response(200, json=_prm())}, seen) as http:
        metadata = await discover_resource(
            http, RESOURCE, challenge=Challenge("bearer", resource_metadata=url)
        )
    assert seen == [url]
    assert metadata.issuer == "https://as.example.com"
    assert metadata.scopes_supported == ("mcp:read", "mcp:write")


@pytest.mark.anyio
async def test_discovery_falls_back_to_the_root_well_known_url() -> None:
    """Without a challenge URL: the path-aware URL (404 here), then the root, which answers."""
    seen: list[str] = []
    async with _client({PRM_ROOT: httpx2.Response(200, json=_prm())}, seen) as http:
        metadata = await discover_resource(http, RESOURCE)
    assert seen == [PRM_PATH, PRM_ROOT]
    assert metadata.url == PRM_ROOT


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("document", "why"),
    [
        pytest.param(_prm(resource="https://evil.example/mcp"), "not of", id="resource-mismatch"),
        pytest.param(_prm(resource=None), "no 'resource'", id="no-resource"),
        pytest.param(_prm(authorization_servers=[]), "no 'authorization_servers'", id="no-servers"),
        pytest.param(_prm(scopes_supported="a b"), "scopes_supported", id="scopes-not-a-list"),
    ],
)
async def test_unusable_metadata_is_refused_naming_each_document(
    document: dict[str, Any], why: str
) -> None:
    """Every URL tried is named with why it was not used; nothing is logged in to."""
    seen: list[str] = []
    routes = {PRM_PATH: httpx2.Response(200, json=document), PRM_ROOT: httpx2.Response(500)}
    async with _client(routes, seen) as http:
        with pytest.raises(ol.ResourceDiscoveryError) as info:
            await discover_resource(http, RESOURCE)
    (first, second) = info.value.tried
    assert first[0] == PRM_PATH
    assert why in first[1]
    assert second == (PRM_ROOT, "HTTP 500")
    assert PRM_PATH in str(info.value)
    assert pickle.loads(pickle.dumps(info.value)).tried == info.value.tried  # noqa: S301


@pytest.mark.anyio
async def test_plain_http_resource_off_loopback_is_refused() -> None:
    """A non-loopback http resource URL is refused before anything is fetched."""
    seen: list[str] = []
    async with _client({}, seen) as http:
        with pytest.raises(ol.ResourceDiscoveryError, match="not an https URL"):
            await discover_resource(http, "http://mcp.example.com/mcp")
    assert seen == []


@pytest.mark.anyio
async def test_probe_reads_the_401_challenge() -> None:
    """An unauthenticated request to the resource yields its Bearer challenge; other statuses none."""
    header = {"WWW-Authenticate": f'Bearer resource_metadata="{PRM_ROOT}", scope="mcp:read"'}
    async with _client({RESOURCE: httpx2.Response(401, headers=header)}, []) as http:
        challenge = await probe(http, RESOURCE)
    assert challenge == Challenge("bearer", scope="mcp:read", resource_metadata=PRM_ROOT)
    async with _client({RESOURCE: httpx2.Response(200)}, []) as http:
        assert await probe(http, RESOURCE) is None


def _metadata(scopes: tuple[str, ...] | None) -> Any:
    from oauth_loopback._login._resource import ResourceMetadata

    return ResourceMetadata("u", RESOURCE, ("https://as.example.com",), scopes, {})


@pytest.mark.parametrize(
    ("challenge", "scopes", "expected"),
    [
        pytest.param(Challenge("bearer", scope="a"), ("x", "y"), "a", id="challenge-wins"),
        pytest.param(Challenge("bearer"), ("x", "y"), "x y", id="scopes-supported"),
        pytest.param(None, ("x",), "x", id="no-challenge"),
        pytest.param(Challenge("bearer"), None, None, id="none-at-all"),
        pytest.param(None, (), None, id="empty-list"),
    ],
)
def test_scope_selection_follows_the_mcp_spec(
    challenge: Challenge | None, scopes: tuple[str, ...] | None, expected: str | None
) -> None:
    """The challenge's scope, else scopes_supported, else no scope parameter at all."""
    assert select_scope(challenge, _metadata(scopes)) == expected


@pytest.mark.parametrize(
    ("parts", "expected"),
    [
        pytest.param(("a", "a b"), "a b", id="union"),
        pytest.param(("b a", "a c"), "b a c", id="order-kept"),
        pytest.param((None, "a"), "a", id="nothing-granted"),
        pytest.param((None, None), None, id="none"),
        pytest.param(("  a  ", ""), "a", id="whitespace"),
    ],
)
def test_step_up_asks_for_the_union(parts: tuple[str | None, ...], expected: str | None) -> None:
    """Step-up on insufficient_scope requests what was granted plus what was challenged."""
    assert merge_scopes(*parts) == expected
