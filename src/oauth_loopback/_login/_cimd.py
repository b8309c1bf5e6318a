"""Client ID metadata documents: a ``client_id`` that is an https URL to the client's metadata.

The MCP authorization specification prefers them over dynamic registration, following the IETF
draft "OAuth Client ID Metadata Document" (draft-ietf-oauth-client-id-metadata-document): the
client publishes a JSON document (RFC 7591 §2 client metadata) at an https URL, and that URL is
its ``client_id``. The authorization server fetches it when the client first shows up. Nothing
is registered, so nothing goes stale when the loopback port changes: the document lists
*portless* loopback redirect URIs, which a server matches on any port (RFC 8252 §7.3).

Pure functions, no I/O: :func:`is_metadata_document_url` (which ``client_id`` values are such
URLs), :func:`metadata_document` (what ``oauth-loopback cimd write`` writes) and
:func:`check_metadata_document` (what ``oauth-loopback cimd check`` reports).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal
from urllib.parse import urlsplit

from .._loopback import loopback_http_uri

__all__ = [
    "LOOPBACK_REDIRECT_URIS",
    "Finding",
    "check_metadata_document",
    "has_errors",
    "is_metadata_document_url",
    "metadata_document",
    "metadata_document_url_problem",
]

#: RFC 8252 §7.3 + §8.3: IPv4 and IPv6 loopback literals, no port (any port at request time).
LOOPBACK_REDIRECT_URIS: Final = ("http://127.0.0.1/callback", "http://[::1]/callback")

# draft-ietf-oauth-client-id-metadata-document §4.1: authentication methods built on a shared
# secret cannot be used, since the document is public and no secret was ever issued.
_SECRET_METHODS: Final = frozenset(
    {"client_secret_post", "client_secret_basic", "client_secret_jwt"}
)

_Report = Callable[[str, str], None]


def metadata_document_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a client ID metadata document URL, or None if it can.

    The draft's §3: an https URL with a path, no fragment, no user information and no dot
    segments (a query string is allowed but discouraged, and reported by the checker).
    """
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a bad port)
    except ValueError:
        return "it is not a valid URL"
    if parts.scheme != "https" or not parts.hostname:
        return "it must be an https URL"
    if parts.path in ("", "/"):
        return "it must have a path, such as https://app.example/oauth/client.json"
    if parts.fragment or "#" in url:
        return "it must not have a fragment"
    if parts.username is not None or parts.password is not None:
        return "it must not contain user information"
    if any(segment in (".", "..") for segment in parts.path.split("/")):
        return "it must not contain . or .. path segments"
    return None


def is_metadata_document_url(client_id: str, *, issuer: str | None = None) -> bool:
    """True when ``client_id`` is an https URL usable as a client ID metadata document.

    With an ``issuer`` that is itself plain http on loopback (a local test server such as
    :mod:`oauth_loopback.testing`, the one place plain http is accepted, as for issuers and
    endpoints), an http URL on loopback counts too, so tests can serve the document locally.
    """
    if client_id.startswith("https://"):
        return metadata_document_url_problem(client_id) is None
    if issuer is None or loopback_http_uri(issuer) is None:
        return False
    parts = loopback_http_uri(client_id)
    return parts is not None and parts.path != "/" and not parts.query


def metadata_document(
    client_id: str,
    *,
    client_name: str,
    redirect_path: str = "/callback",
    scope: str | None = None,
    client_uri: str | None = None,
    logo_uri: str | None = None,
) -> dict[str, object]:
    """The client ID metadata document of a native app that logs in through oauth-loopback.

    A public native client (OpenID Connect Registration ``application_type: native``, RFC 7591
    ``token_endpoint_auth_method: none``: PKCE protects the code, RFC 8252 §8.4) with portless
    loopback redirect URIs on ``redirect_path`` for IPv4 and IPv6, that may refresh its tokens.

    :raises ValueError: ``client_id`` is not a usable document URL, or ``redirect_path`` is
        not an absolute path.
    """
    problem = metadata_document_url_problem(client_id)
    if problem is not None:
        msg = f"client_id {client_id!r} cannot be a client ID metadata document URL: {problem}."
        raise ValueError(msg)
    if not redirect_path.startswith("/") or any(c in redirect_path for c in "?# "):
        msg = (
            f"The redirect path must be an absolute path such as /callback, not {redirect_path!r}."
        )
        raise ValueError(msg)
    document: dict[str, object] = {
        "client_id": client_id,
        "client_name": client_name,
        "redirect_uris": [
            uri.replace("/callback", redirect_path) for uri in LOOPBACK_REDIRECT_URIS
        ],
        "application_type": "native",
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
    }
    if scope is not None:
        document["scope"] = scope
    if client_uri is not None:
        document["client_uri"] = client_uri
    if logo_uri is not None:
        document["logo_uri"] = logo_uri
    return document


@dataclass(frozen=True)
class Finding:
    """One thing :func:`check_metadata_document` noticed: an ``error`` (servers will refuse the
    document, or logins through oauth-loopback cannot work) or a ``warning``."""

    level: Literal["error", "warning"]
    field: str
    message: str


def check_metadata_document(
    document: object, *, url: str | None = None, redirect_path: str | None = None
) -> list[Finding]:
    """Check a client ID metadata document for a native app logging in on a loopback port.

    ``url`` is where it is (to be) published: its ``client_id`` must be exactly that URL (the
    draft's §4.1, simple string comparison). ``redirect_path``, when given, is the path the app
    listens on (``CallbackConfig.path``), which some redirect URI must use.
    """
    findings: list[Finding] = []

    def error(name: str, message: str) -> None:
        findings.append(Finding("error", name, message))

    def warning(name: str, message: str) -> None:
        findings.append(Finding("warning", name, message))

    if not isinstance(document, Mapping):
        error("(document)", "the document must be a JSON object")
        return findings
    client_id = document.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        error("client_id", "is missing; it must be the URL the document is published at")
    else:
        problem = metadata_document_url_problem(client_id)
        if problem is not None:
            error("client_id", f"{client_id!r} cannot be a document URL: {problem}")
        elif urlsplit(client_id).query:
            warning("client_id", "has a query string, which the draft discourages")
        if url is not None and client_id != url:
            error(
                "client_id",
                f"is {client_id!r} but the document is at {url!r}; they must be identical",
            )
    for name in ("client_secret", "client_secret_expires_at"):
        if name in document:
            error(name, "must not be present: a public document cannot hold a secret")
    method = document.get("token_endpoint_auth_method")
    if method is None:
        warning(
            "token_endpoint_auth_method",
            "is missing; RFC 7591's default is client_secret_basic, which needs a secret: "
            'set "none"',
        )
    elif method in _SECRET_METHODS:
        error("token_endpoint_auth_method", f'{method!r} needs a shared secret; use "none"')
    elif method != "none":
        warning(
            "token_endpoint_auth_method",
            f'{method!r}: oauth-loopback logs in as a public client ("none")',
        )
    _check_redirect_uris(document.get("redirect_uris"), redirect_path, error, warning)
    if document.get("application_type") != "native":
        warning(
            "application_type",
            'should be "native": servers then accept loopback redirect URIs on any port',
        )
    grants = document.get("grant_types")
    if grants is None:
        warning(
            "grant_types",
            'is missing (default ["authorization_code"]); add "refresh_token" to stay logged in',
        )
    elif not isinstance(grants, list) or not all(isinstance(g, str) for g in grants):
        error("grant_types", "must be a list of strings")
    else:
        if "authorization_code" not in grants:
            error("grant_types", 'must include "authorization_code"')
        if "refresh_token" not in grants:
            warning("grant_types", 'has no "refresh_token": every run would need the browser')
    responses = document.get("response_types")
    if responses is not None and (not isinstance(responses, list) or "code" not in responses):
        error("response_types", 'must include "code"')
    if not isinstance(document.get("client_name"), str):
        warning("client_name", "is missing; the consent page then shows the URL")
    return findings


def _check_redirect_uris(
    uris: object,
    redirect_path: str | None,
    error: _Report,
    warning: _Report,
) -> None:
    if not isinstance(uris, list) or not uris or not all(isinstance(u, str) for u in uris):
        error("redirect_uris", "must be a non-empty list of loopback URIs")
        return
    paths: set[str] = set()
    for uri in uris:
        parts = loopback_http_uri(uri)
        if parts is None:
            error("redirect_uris", f"{uri!r} is not an http URI on a loopback address")
            continue
        paths.add(parts.path)
        if parts.host == "localhost":
            warning(
                "redirect_uris",
                f"{uri!r}: use 127.0.0.1 or [::1] rather than localhost (RFC 8252 §8.3)",
            )
        if parts.port is not None:
            warning(
                "redirect_uris",
                f"{uri!r} pins port {parts.port}; leave the port out so that any port "
                f"matches (RFC 8252 §7.3)",
            )
        if parts.query:
            error("redirect_uris", f"{uri!r} has a query string, which the receiver refuses")
    if redirect_path is not None and paths and redirect_path not in paths:
        error(
            "redirect_uris",
            f"none uses the path {redirect_path!r} the app listens on (CallbackConfig.path)",
        )


def has_errors(findings: Sequence[Finding]) -> bool:
    return any(f.level == "error" for f in findings)
