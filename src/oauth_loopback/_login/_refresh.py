"""Refreshing a stored login (RFC 6749 §6), and the server metadata it needs.

The refresh grant carries no redirect URI, so a loopback port that changed since the login
costs nothing here: whatever port the next run listens on, the stored refresh token and the
client it was issued to are all a refresh needs.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Final

import httpx2

from .._errors import OAuthLoopbackError, TokenError
from .._store._records import CachedMetadata, ClientRegistration, StoredTokens
from ._client import Client
from ._metadata import Metadata, check_server, discover, given_metadata
from ._token import Token

__all__ = ["METADATA_MAX_AGE", "is_refusal", "load_server", "refresh"]

logger = logging.getLogger("oauth_loopback.oauth")

#: Stored server metadata younger than this is used without asking the server again. RFC 8414
#: sets no lifetime; a day keeps endpoint changes from lasting long while sparing a request
#: per refresh.
METADATA_MAX_AGE: Final = 24 * 3600.0

# RFC 6749 §5.2: the error codes with which a token endpoint refuses a grant. Any of them (or
# another 400/401 answer) means this refresh token or client will not work again, so the user
# logs in again; a 5xx or an unreadable reply is a server problem and is raised instead.
_REFUSALS: Final = frozenset(
    {
        "invalid_request",
        "invalid_client",
        "invalid_grant",
        "unauthorized_client",
        "unsupported_grant_type",
        "invalid_scope",
    }
)


def is_refusal(error: TokenError) -> bool:
    """True when the token endpoint refused the refresh token or client (log in again)."""
    if error.error in _REFUSALS:
        return True
    return error.status_code in (400, 401) and error.error != "invalid_token_response"


async def load_server(
    issuer: str,
    *,
    given: Mapping[str, object] | None,
    cached: CachedMetadata | None,
    transport: httpx2.AsyncBaseTransport | None,
) -> tuple[Metadata, CachedMetadata | None]:
    """The server's metadata: ``given`` (``metadata=``), a fresh cached copy, or discovery.

    Returns it with the :class:`CachedMetadata` to keep in the store (None for ``given``).
    """
    if given is not None:
        server = given_metadata(given, issuer)
        check_server(server)
        return server, None
    if cached is not None and 0 <= cached.age() < METADATA_MAX_AGE:
        server = Metadata("the stored copy of the server's metadata", cached.document)
        check_server(server)
        return server, cached
    async with Client(issuer=issuer, redirect_uri=None, scope=None, transport=transport) as oauth:
        fetched_at = time.time()
        server = await discover(oauth, issuer)
    check_server(server)
    return server, CachedMetadata(document=server.document, fetched_at=fetched_at)


async def refresh(
    issuer: str,
    client: ClientRegistration,
    refresh_token: str,
    *,
    server: Metadata,
    resource: str | None,
    transport: httpx2.AsyncBaseTransport | None,
    dpop_key: Mapping[str, object] | None = None,
) -> Token:
    """RFC 6749 §6 with ``client``'s credentials; ``resource`` again (RFC 8707 §2.2); a proof
    of ``dpop_key`` (a stored private JWK) for a DPoP-bound refresh token (RFC 9449 §5).

    :raises TokenError: the server refused (``grant_type == "refresh_token"``); see
        :func:`is_refusal` for which refusals mean "log in again".
    :raises ServerUnreachable: the token endpoint did not answer.
    """
    # scope=None: a refresh without scope keeps the scope originally granted (§6).
    async with Client(issuer=issuer, redirect_uri=None, scope=None, transport=transport) as oauth:
        oauth.set_client(client.client_id, client.client_secret, client.token_endpoint_auth_method)
        key = None
        if dpop_key is not None:
            from ._dpop import DPoPKey

            key = DPoPKey.from_jwk(dpop_key)
        token = await oauth.refresh(
            server.token_endpoint, refresh_token=refresh_token, resource=resource, dpop_key=key
        )
    logger.info("refreshed the access token at %s", server.token_endpoint)
    token.client = client
    return token


async def revoke(
    issuer: str,
    client: ClientRegistration,
    tokens: StoredTokens,
    *,
    metadata: Mapping[str, object] | None,
    transport: httpx2.AsyncBaseTransport | None = None,
) -> str | None:
    """RFC 7009: revoke the refresh token, then the access token, where the server offers it.

    Returns None when done or when the server offers no revocation endpoint (nothing to
    do there), else why it failed, in words for the user. Never raises for the server's
    answer: logging out locally must not depend on it.
    """
    try:
        server, _ = await load_server(
            issuer, given=None, cached=_cached(metadata), transport=transport
        )
    except OAuthLoopbackError as exc:
        return str(exc)
    endpoint = server.document.get("revocation_endpoint")
    if not isinstance(endpoint, str) or not endpoint:
        return None
    hints = [(tokens.refresh_token, "refresh_token"), (tokens.access_token, "access_token")]
    async with Client(issuer=issuer, redirect_uri=None, scope=None, transport=transport) as oauth:
        oauth.set_client(client.client_id, client.client_secret, client.token_endpoint_auth_method)
        for value, hint in hints:
            if value is None:
                continue
            problem = await oauth.revoke(endpoint, value, hint)
            if problem is not None:
                return problem
    logger.info("revoked the stored tokens at %s", endpoint)
    return None


def _cached(metadata: Mapping[str, object] | None) -> CachedMetadata | None:
    return (
        None
        if metadata is None
        else CachedMetadata(document=dict(metadata), fetched_at=time.time())
    )
