"""Authorization server metadata: discovery (RFC 8414, OpenID Connect Discovery), checks.

The issuer is checked before anything is fetched (https, or http to loopback only), the
document's ``issuer`` must be the one asked for (RFC 8414 §3.3), and a server that cannot
give a native app a safe login (no PKCE S256, RFC 7636 §4.2) is refused up front.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

import httpx2

from .._errors import (
    DiscoveryError,
    UnsupportedServer,
)
from .._loopback import is_loopback_host
from ._client import Client, json_object

logger = logging.getLogger("oauth_loopback.oauth")


# Token and metadata documents are small; a megabyte is far more than any real one.
MAX_DOCUMENT: Final = 1024 * 1024


def check_issuer(issuer: object) -> str:
    """An issuer is an https URL with no query or fragment (RFC 8414 §2); http on loopback
    is allowed for local test servers such as :mod:`oauth_loopback.testing`."""
    if not isinstance(issuer, str):
        msg = f"issuer must be the authorization server's URL as a string, not {issuer!r}."
        raise TypeError(msg)
    parts = urlsplit(issuer)
    host = parts.hostname or ""
    if parts.scheme == "http" and is_loopback_host(host):
        pass
    elif parts.scheme != "https" or not host:
        msg = (
            f"The issuer {issuer!r} is not an https URL. An authorization server's issuer "
            f"must use https (RFC 8414 §2; plain http only on a loopback test server). Pass "
            f"the server's issuer, such as 'https://auth.example.com'."
        )
        raise UnsupportedServer(msg)
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        msg = (
            f"The issuer {issuer!r} has a query or fragment, which an issuer identifier may "
            f"not have (RFC 8414 §2). Pass the server's issuer, such as "
            f"'https://auth.example.com'."
        )
        raise UnsupportedServer(msg)
    if parts.username is not None or parts.password is not None:
        msg = f"The issuer {issuer!r} contains user information ('user@host'); remove it."
        raise UnsupportedServer(msg)
    return issuer


def discovery_urls(issuer: str) -> list[str]:
    """The metadata URLs tried for ``issuer``, in order.

    RFC 8414 §3.1 inserts the well-known segment between host and path (its trailing ``/``
    removed); OpenID Connect Discovery 1.0 §4 appends it to the path, and RFC 8414 §5 also
    defines the inserted form for ``openid-configuration``. The order follows the MCP
    authorization specification. For an issuer without a path the forms coincide.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))

    if not path:
        return [
            at("/.well-known/oauth-authorization-server"),
            at("/.well-known/openid-configuration"),
        ]
    return [
        at(f"/.well-known/oauth-authorization-server{path}"),
        at(f"/.well-known/openid-configuration{path}"),
        at(f"{path}/.well-known/openid-configuration"),
    ]


class Metadata:
    """The fields of the server's metadata this flow uses, validated."""

    def __init__(self, url: str, document: Mapping[str, object]) -> None:
        self.url = url
        self.document = document
        self.authorization_endpoint = _endpoint(document, "authorization_endpoint", url)
        self.token_endpoint = _endpoint(document, "token_endpoint", url)
        registration = document.get("registration_endpoint")
        self.registration_endpoint = (
            _endpoint(document, "registration_endpoint", url) if registration else None
        )
        # RFC 9207 §3: the server promises to send iss in every authorization response.
        self.issues_iss = document.get("authorization_response_iss_parameter_supported") is True
        jwks = document.get("jwks_uri")  # RFC 8414 §2: the keys ID tokens are signed with
        self.jwks_uri = _endpoint(document, "jwks_uri", url) if jwks else None
        # RFC 9126 §5: pushed authorization requests, offered or required.
        par = document.get("pushed_authorization_request_endpoint")
        self.par_endpoint = (
            _endpoint(document, "pushed_authorization_request_endpoint", url) if par else None
        )
        self.require_par = document.get("require_pushed_authorization_requests") is True
        self.code_challenge_methods = _string_list(document, "code_challenge_methods_supported")
        self.response_types = _string_list(document, "response_types_supported")


def _string_list(document: Mapping[str, object], key: str) -> list[str] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        msg = f"The server's metadata field {key!r} is not a list of strings (RFC 8414 §2)."
        raise UnsupportedServer(msg)
    return [str(v) for v in value]


def _endpoint(document: Mapping[str, object], key: str, source: str) -> str:
    value = document.get(key)
    if value is None or value == "":
        msg = (
            f"The metadata at {source} has no {key!r}, which this login needs (RFC 8414 §2). "
            f"The server may not support the authorization code flow."
        )
        raise UnsupportedServer(msg)
    if not isinstance(value, str):
        msg = (
            f"The metadata at {source} gives {key!r} as a {type(value).__name__} "
            f"({value!r:.80}), not the URL string RFC 8414 §2 requires. The server's metadata "
            f"is malformed: report it to its operator."
        )
        raise UnsupportedServer(msg)
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )
    if not secure or not parts.hostname:
        msg = (
            f"The metadata at {source} gives {key}={value!r}, which is not an https URL. "
            f"Codes and tokens are only sent over https (RFC 6749 §3.1, §3.2; plain http "
            f"only to a loopback test server)."
        )
        raise UnsupportedServer(msg)
    return value


async def discover(client: Client, issuer: str) -> Metadata:
    tried: list[tuple[str, str]] = []
    urls = discovery_urls(issuer)
    for index, url in enumerate(urls):
        try:
            response = await client.get(url)
        except httpx2.TransportError as exc:
            tried.append((url, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__))
            # Every URL is on the same host: if it did not answer one, asking the others
            # would only multiply the wait (up to the connect timeout each).
            tried.extend(
                (later, "not asked: the host did not answer") for later in urls[index + 1 :]
            )
            break
        if response.status_code != 200:
            tried.append((url, f"HTTP {response.status_code}"))
            continue
        document = json_object(response)
        if document is None:
            tried.append((url, "not a JSON object"))
            continue
        # RFC 8414 §3.3: the issuer in the metadata MUST be identical to the one asked
        # for, or the metadata MUST NOT be used (a mix-up or impersonation defence).
        if document.get("issuer") != issuer:
            tried.append((url, f"its issuer is {document.get('issuer')!r}, not {issuer!r}"))
            continue
        logger.debug("discovered metadata at %s", url)
        return Metadata(url, document)
    raise DiscoveryError(issuer, tuple(tried))


def given_metadata(metadata: Mapping[str, object], issuer: str) -> Metadata:
    """Validate metadata passed by the caller (for servers without discovery)."""
    if not isinstance(metadata, Mapping):
        msg = f"metadata= must be a mapping such as {{'authorization_endpoint': ...}}, not {metadata!r}."
        raise TypeError(msg)
    given = metadata.get("issuer", issuer)
    if given != issuer:
        msg = (
            f"metadata= names issuer {given!r}, but authorize() was given {issuer!r}; they "
            f"must be identical (RFC 8414 §3.3). Pass the same issuer to both."
        )
        raise UnsupportedServer(msg)
    return Metadata("the metadata= argument", {**metadata, "issuer": issuer})


def check_server(metadata: Metadata) -> None:
    methods = metadata.code_challenge_methods
    if methods is not None and "S256" not in methods:
        msg = (
            f"The authorization server lists code_challenge_methods_supported={methods}, "
            f"without S256 (metadata at {metadata.url}). oauth-loopback always uses PKCE "
            f"with S256 (RFC 7636 §4.2; 'plain' protects nothing), so it will not log in "
            f"here. Ask the server's operator to enable S256."
        )
        raise UnsupportedServer(msg)
    if methods is None:
        logger.info(
            "the server's metadata does not list code_challenge_methods_supported; "
            "sending PKCE S256 anyway"
        )
    response_types = metadata.response_types
    if response_types is not None and "code" not in response_types:
        msg = (
            f"The authorization server lists response_types_supported={response_types}, "
            f"without 'code' (metadata at {metadata.url}), so it offers no authorization code "
            f"flow for a native app."
        )
        raise UnsupportedServer(msg)
