"""Client ID metadata documents, the server side: fetch the document a ``client_id`` names.

With ``AuthorizationServer(client_id_metadata_documents=True)`` a ``client_id`` that is a URL is
looked up by fetching it (draft-ietf-oauth-client-id-metadata-document §4): the document must be
a JSON object whose ``client_id`` is exactly that URL, listing loopback redirect URIs, for a
public client (no secret, ``token_endpoint_auth_method`` ``none``).

The draft requires https document URLs. This *test* server also fetches ``http`` URLs on a
loopback address, so that a test can serve the document itself on ``127.0.0.1`` without a
certificate; it never fetches plain http from anywhere else. Redirects are not followed.

Written independently of the client-side checker (``oauth_loopback._login._cimd``), so that a
mistake in one is caught by the other.
"""

from __future__ import annotations

import json
import logging
from typing import Final
from urllib.parse import urlsplit

from ._authlib import ClientRecord, is_loopback_http

__all__ = ["DocumentRefused", "fetch_client", "is_document_url"]

logger = logging.getLogger("oauth_loopback.testing")

#: The draft suggests limiting documents to about 5 kilobytes.
MAX_DOCUMENT: Final = 5 * 1024
_FETCH_TIMEOUT: Final = 5.0
_SECRET_METHODS: Final = frozenset(
    {"client_secret_post", "client_secret_basic", "client_secret_jwt"}
)


class DocumentRefused(Exception):
    """The document could not be fetched or used; the message says why (for an error page)."""


def is_document_url(client_id: str) -> bool:
    """A client_id this server treats as a document URL: https with a path, or (test-only)
    http on a loopback address."""
    parts = urlsplit(client_id)
    if parts.scheme == "https":
        return bool(parts.hostname) and parts.path not in ("", "/")
    return parts.scheme == "http" and is_loopback_http(client_id) and parts.path not in ("", "/")


async def fetch_client(url: str, *, exact_redirect_match: bool) -> ClientRecord:
    """Fetch and validate the document at ``url``; the client it describes.

    :raises DocumentRefused: with the reason, meant for the user's error page.
    """
    import httpx2  # deferred, as in follow_redirects: only this feature needs a client

    if not is_document_url(url):
        msg = f"{url} is not an https URL with a path (nor, on this test server, loopback http)."
        raise DocumentRefused(msg)
    try:
        async with httpx2.AsyncClient(
            trust_env=False, follow_redirects=False, timeout=_FETCH_TIMEOUT
        ) as client:
            response = await client.get(url, headers={"Accept": "application/json"})
    except httpx2.HTTPError as exc:
        msg = f"The client ID metadata document at {url} could not be fetched: {exc!r}."
        raise DocumentRefused(msg) from exc
    logger.debug("fetched the client ID metadata document %s: HTTP %s", url, response.status_code)
    if response.status_code != 200:
        msg = f"The client ID metadata document at {url} answered HTTP {response.status_code}."
        raise DocumentRefused(msg)
    if len(response.content) > MAX_DOCUMENT:
        msg = f"The client ID metadata document at {url} is over {MAX_DOCUMENT} bytes."
        raise DocumentRefused(msg)
    try:
        document = json.loads(response.content)
    except ValueError as exc:
        msg = f"The client ID metadata document at {url} is not JSON."
        raise DocumentRefused(msg) from exc
    return _client(url, document, exact_redirect_match)


def _client(url: str, document: object, exact_redirect_match: bool) -> ClientRecord:
    if not isinstance(document, dict):
        msg = f"The client ID metadata document at {url} is not a JSON object."
        raise DocumentRefused(msg)
    if document.get("client_id") != url:
        msg = (
            f"The client ID metadata document at {url} names client_id "
            f"{document.get('client_id')!r}; it must be the document's URL exactly."
        )
        raise DocumentRefused(msg)
    method = document.get("token_endpoint_auth_method", "none")
    if "client_secret" in document or method in _SECRET_METHODS:
        msg = (
            f"The client ID metadata document at {url} uses a shared secret, which a public "
            f"document cannot hold; use token_endpoint_auth_method 'none'."
        )
        raise DocumentRefused(msg)
    if method != "none":
        msg = f"This test server supports only token_endpoint_auth_method 'none', not {method!r}."
        raise DocumentRefused(msg)
    uris = document.get("redirect_uris")
    if (
        not isinstance(uris, list)
        or not uris
        or not all(isinstance(u, str) and is_loopback_http(u) for u in uris)
    ):
        msg = (
            f"The client ID metadata document at {url} must list loopback http redirect_uris "
            f"such as http://127.0.0.1/callback."
        )
        raise DocumentRefused(msg)
    grants = document.get("grant_types", ["authorization_code"])
    if not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        msg = f"The client ID metadata document at {url} has a grant_types that is not a list."
        raise DocumentRefused(msg)
    name = document.get("client_name")
    application_type = document.get("application_type", "web")
    return ClientRecord(
        client_id=url,
        redirect_uris=tuple(uris),
        application_type=application_type if isinstance(application_type, str) else "web",
        token_endpoint_auth_method="none",  # noqa: S106  (an RFC 7591 method name)
        client_secret=None,
        grant_types=tuple(grants),
        client_name=name if isinstance(name, str) else None,
        dynamic=False,
        exact_redirect_match=exact_redirect_match,
        metadata_document=True,
    )
