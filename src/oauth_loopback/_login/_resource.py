"""Protected resources the MCP way: from a resource URL to its authorization server and scopes.

The MCP authorization specification (2025-11-25) asks every client to start from the
resource, not the issuer:

1. RFC 9728 protected resource metadata: the URL named by ``resource_metadata`` in the 401's
   ``WWW-Authenticate`` challenge (RFC 9728 §5.1), else the well-known URLs, path-aware first
   (``/.well-known/oauth-protected-resource/<path>``), then the root (RFC 9728 §3.1);
2. the metadata's ``resource`` must be the resource asked for (RFC 9728 §3.3), so one
   server cannot send the client to another's authorization server; a resource that is the
   same origin and a path prefix of the URL is accepted, as the MCP SDKs do (one metadata
   document for ``/mcp`` and ``/mcp/...``);
3. its first ``authorization_servers`` entry is the issuer to log in to;
4. scopes: the challenge's ``scope``, else the metadata's ``scopes_supported``, else none;
   on ``403 insufficient_scope`` (RFC 6750 §3.1) the union of those already granted and the
   challenged ones (:func:`merge_scopes`).

Nothing here stores or logs a token; the requests carry none.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from .._errors import ResourceDiscoveryError
from .._loopback import is_loopback_host
from ._client import json_object
from ._dpop_wire import parse_www_authenticate

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "Challenge",
    "ResourceMetadata",
    "bearer_challenge",
    "check_resource",
    "discover_resource",
    "merge_scopes",
    "resource_metadata_urls",
    "select_scope",
]

logger = logging.getLogger("oauth_loopback.resource")


@dataclass(frozen=True)
class Challenge:
    """A ``Bearer`` (or ``DPoP``) challenge from ``WWW-Authenticate`` (RFC 6750 §3, RFC 9728 §5.1)."""

    scheme: str
    error: str | None = None
    error_description: str | None = None
    scope: str | None = None
    resource_metadata: str | None = None

    @property
    def insufficient_scope(self) -> bool:
        """RFC 6750 §3.1: the token lacks a scope the request needs (a 403 asks for step-up)."""
        return self.error == "insufficient_scope"


@dataclass(frozen=True)
class ResourceMetadata:
    """The RFC 9728 §2 fields this flow uses, from the document at ``url``."""

    url: str
    resource: str
    authorization_servers: tuple[str, ...]
    scopes_supported: tuple[str, ...] | None
    document: Mapping[str, object]

    @property
    def issuer(self) -> str:
        """The authorization server to log in to: the first one listed (MCP spec)."""
        return self.authorization_servers[0]


def bearer_challenge(headers: Mapping[str, str] | Sequence[str]) -> Challenge | None:
    """The first ``Bearer``/``DPoP`` challenge in the ``WWW-Authenticate`` header(s), or None.

    ``headers`` is a response's headers (case-insensitive mapping) or the header values.
    """
    if isinstance(headers, Mapping):
        getter = getattr(headers, "get_list", None)
        values = list(getter("www-authenticate")) if callable(getter) else []
        if not values:
            value = headers.get("www-authenticate") or headers.get("WWW-Authenticate")
            values = [value] if value else []
    else:
        values = list(headers)
    for scheme, params in parse_www_authenticate(", ".join(values)):
        if scheme in ("bearer", "dpop"):
            return Challenge(
                scheme=scheme,
                error=params.get("error"),
                error_description=params.get("error_description"),
                scope=params.get("scope") or None,
                resource_metadata=params.get("resource_metadata") or None,
            )
    return None


def _check_url(url: str, what: str) -> str:
    parts = urlsplit(url)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )
    if not secure or not parts.hostname or parts.username is not None:
        msg = (
            f"The {what} {url!r} is not an https URL (plain http is allowed only to a loopback "
            f"test server), so it was not used. Check the resource URL you passed."
        )
        raise ResourceDiscoveryError(msg, tried=())
    return url


def resource_metadata_urls(resource: str) -> list[str]:
    """The well-known URLs of ``resource``'s metadata, in the order RFC 9728 §3.1 / MCP try them."""
    parts = urlsplit(resource)
    path = parts.path.rstrip("/")
    root = urlunsplit((parts.scheme, parts.netloc, "/.well-known/oauth-protected-resource", "", ""))
    if not path:
        return [root]
    inserted = urlunsplit(
        (parts.scheme, parts.netloc, f"/.well-known/oauth-protected-resource{path}", "", "")
    )
    return [inserted, root]


def check_resource(declared: str, resource: str) -> bool:
    """Whether metadata declaring ``declared`` may speak for ``resource`` (RFC 9728 §3.3).

    Identical, or the same scheme, host and port with ``declared``'s path a whole-segment
    prefix of ``resource``'s (``/mcp`` speaks for ``/mcp`` and ``/mcp/x``, not ``/mcpx``).
    """
    if declared == resource:
        return True
    d, r = urlsplit(declared), urlsplit(resource)
    if (d.scheme, d.netloc) != (r.scheme, r.netloc) or d.query or d.fragment:
        return False
    prefix = d.path.rstrip("/")
    return (
        r.path == prefix or r.path.startswith(prefix + "/") or (not prefix and r.path in ("", "/"))
    )


def _parse(url: str, document: Mapping[str, object], resource: str) -> ResourceMetadata | str:
    """The metadata, or why this document cannot be used."""
    declared = document.get("resource")
    if not isinstance(declared, str) or not declared:
        return "it has no 'resource' (RFC 9728 §2)"
    if not check_resource(declared, resource):
        return f"it is the metadata of {declared!r}, not of {resource!r} (RFC 9728 §3.3)"
    servers = document.get("authorization_servers")
    if (
        not isinstance(servers, list)
        or not servers
        or not all(isinstance(s, str) and s for s in servers)
    ):
        return "it lists no 'authorization_servers' (RFC 9728 §2)"
    scopes = document.get("scopes_supported")
    if scopes is not None and (
        not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes)
    ):
        return "its 'scopes_supported' is not a list of strings (RFC 9728 §2)"
    return ResourceMetadata(
        url=url,
        resource=declared,
        authorization_servers=tuple(str(s) for s in servers),
        scopes_supported=None if scopes is None else tuple(str(s) for s in scopes),
        document=document,
    )


async def probe(http: httpx2.AsyncClient, resource: str) -> Challenge | None:
    """Ask ``resource`` without a token; its 401 challenge, if it sends one (MCP: step one)."""
    import httpx2

    try:
        response = await http.get(
            resource, headers={"Accept": "application/json, text/event-stream"}
        )
    except httpx2.HTTPError as exc:
        logger.info(
            "the resource did not answer an unauthenticated request: %s", type(exc).__name__
        )
        return None
    if response.status_code != 401:
        return None
    return bearer_challenge(response.headers)


async def discover_resource(
    http: httpx2.AsyncClient, resource: str, *, challenge: Challenge | None = None
) -> ResourceMetadata:
    """Fetch and check ``resource``'s RFC 9728 metadata: the challenge's URL, then well-known.

    :raises ResourceDiscoveryError: no usable document; every URL tried is named with why.
    """
    import httpx2

    _check_url(resource, "resource URL")
    urls: list[str] = []
    if challenge is not None and challenge.resource_metadata:
        urls.append(_check_url(challenge.resource_metadata, "resource_metadata URL"))
    urls += [u for u in resource_metadata_urls(resource) if u not in urls]
    tried: list[tuple[str, str]] = []
    for url in urls:
        try:
            response = await http.get(url, headers={"Accept": "application/json"})
        except httpx2.HTTPError as exc:
            tried.append((url, f"{type(exc).__name__}: {exc}"))
            continue
        if response.status_code != 200:
            tried.append((url, f"HTTP {response.status_code}"))
            continue
        document = json_object(response)
        if document is None:
            tried.append((url, "not a JSON object"))
            continue
        parsed = _parse(url, document, resource)
        if isinstance(parsed, str):
            tried.append((url, parsed))
            continue
        return parsed
    lines = "; ".join(f"{url} ({why})" for url, why in tried)
    msg = (
        f"Could not find the protected resource metadata of {resource!r} (RFC 9728). Tried: "
        f"{lines}. Check the resource URL, or log in with the authorization server's issuer "
        f"instead of the resource."
    )
    raise ResourceDiscoveryError(msg, tried=tuple(tried))


def select_scope(challenge: Challenge | None, metadata: ResourceMetadata | None) -> str | None:
    """The MCP spec's scope selection: the challenge's scope, else ``scopes_supported``, else none."""
    if challenge is not None and challenge.scope:
        return challenge.scope
    if metadata is not None and metadata.scopes_supported:
        return " ".join(metadata.scopes_supported)
    return None


def merge_scopes(*scopes: str | None) -> str | None:
    """The union of space-separated scope lists, first-seen order kept (step-up, MCP spec)."""
    merged: dict[str, None] = {}
    for scope in scopes:
        for item in (scope or "").split():
            merged.setdefault(item, None)
    return " ".join(merged) or None


async def discover_issuer(
    resource: str, *, transport: httpx2.AsyncBaseTransport | None = None
) -> tuple[ResourceMetadata, str | None]:
    """Resource-first (MCP): the resource's metadata and the scope to ask for.

    An unauthenticated request to the resource gives its 401 challenge (if it sends one),
    then the metadata is found through it or the well-known URLs, and the scope is chosen as
    the MCP specification says (:func:`select_scope`).
    """
    import httpx2

    loopback = is_loopback_host(urlsplit(resource).hostname or "")
    async with httpx2.AsyncClient(
        transport=transport,
        trust_env=not loopback,  # proxies from the environment never divert loopback traffic
        timeout=httpx2.Timeout(30.0, connect=10.0),
        follow_redirects=False,
    ) as http:
        challenge = await probe(http, resource)
        metadata = await discover_resource(http, resource, challenge=challenge)
    return metadata, select_scope(challenge, metadata)
