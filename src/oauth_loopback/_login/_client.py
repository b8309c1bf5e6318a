"""The one module that talks to authlib's client (which ships no ``py.typed``).

Everything it returns is typed here and nothing untyped leaves it. authlib drops PKCE
silently when the client was not built with ``code_challenge_method="S256"``: the guard
below (``check_pkce``) refuses such a URL.
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .._errors import (
    OAuthLoopbackError,
    ServerUnreachable,
    TokenError,
)
from .._loopback import is_loopback_host
from ._token import Token

# RFC 7636 §4.1: 43-128 characters; authlib's documented idiom gives 48.
VERIFIER_LENGTH: Final = 48
# Each HTTP request to the authorization server; a person is waiting, so fail in seconds
# rather than hang, but leave room for slow identity providers.
HTTP_TIMEOUT: Final = httpx2.Timeout(30.0, connect=10.0)


class Client:
    """A typed wrapper around authlib's ``AsyncOAuth2Client`` (an ``httpx2.AsyncClient``)."""

    def __init__(
        self,
        *,
        issuer: str,
        redirect_uri: str | None,
        scope: str | None,
        transport: httpx2.AsyncBaseTransport | None,
    ) -> None:
        parts = urlsplit(issuer)
        loopback = is_loopback_host(parts.hostname or "")
        # Proxy settings from the environment must never divert loopback traffic.
        trust_env = not loopback
        verify: ssl.SSLContext | bool = True
        if loopback and parts.scheme == "http":
            # A local (test) server over plain http needs no CA store, and loading one costs
            # tens of milliseconds. A context that trusts no CA fails closed should its
            # metadata ever name an https endpoint.
            verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._token_reply: httpx2.Response | None = None
        self._authlib: Any = AsyncOAuth2Client(
            client_id=None,
            redirect_uri=redirect_uri,
            scope=scope,
            # Without this authlib leaves PKCE out of the URL silently; check_pkce guards it.
            code_challenge_method="S256",
            transport=transport,
            trust_env=trust_env,
            verify=verify,
            timeout=HTTP_TIMEOUT,
            follow_redirects=False,
        )
        self._authlib.register_compliance_hook("access_token_response", self._keep_token_reply)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._authlib.aclose()

    def set_client(
        self, client_id: str, client_secret: str | None, auth_method: str | None
    ) -> None:
        self._authlib.client_id = client_id
        self._authlib.client_secret = client_secret
        if auth_method is None:
            auth_method = "client_secret_basic" if client_secret else "none"
        self._authlib.token_endpoint_auth_method = auth_method

    async def get(self, url: str) -> httpx2.Response:
        response = await self._authlib.request(
            "GET", url, withhold_token=True, headers={"Accept": "application/json"}
        )
        assert isinstance(response, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        return response

    async def post_json(self, url: str, body: Mapping[str, object]) -> httpx2.Response:
        response = await self._authlib.request(
            "POST",
            url,
            withhold_token=True,
            json=dict(body),
            headers={"Accept": "application/json"},
        )
        assert isinstance(response, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        return response

    def authorization_url(
        self, endpoint: str, *, state: str, code_verifier: str, resource: str | None
    ) -> str:
        extra: dict[str, str] = {}
        if resource is not None:
            extra["resource"] = resource  # RFC 8707 §2.1
        url, _ = self._authlib.create_authorization_url(
            endpoint, state=state, code_verifier=code_verifier, **extra
        )
        return str(url)

    def _keep_token_reply(self, response: httpx2.Response) -> httpx2.Response:
        # authlib keeps only error and error_description of an error reply, and discards
        # the status; keep the reply to report all RFC 6749 §5.2 fields.
        self._token_reply = response
        return response

    async def exchange(
        self,
        token_endpoint: str,
        *,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        resource: str | None,
    ) -> Token:
        # grant_type explicit: authlib would guess it and remember the guess.
        # redirect_uri: identical to the authorization request's (RFC 6749 §4.1.3).
        return await self._fetch_token(
            token_endpoint,
            "authorization_code",
            code=code,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
            resource=resource,
        )

    async def refresh(
        self, token_endpoint: str, *, refresh_token: str, resource: str | None
    ) -> Token:
        """RFC 6749 §6: a new access token for a refresh token.

        No ``scope`` is sent (§6: omitted means the scope originally granted) and no redirect
        URI (the refresh grant has none, so a changed loopback port never matters here).
        """
        return await self._fetch_token(
            token_endpoint, "refresh_token", refresh_token=refresh_token, resource=resource
        )

    async def _fetch_token(
        self, token_endpoint: str, grant_type: str, *, resource: str | None, **params: str
    ) -> Token:
        if resource is not None:
            params["resource"] = resource  # RFC 8707 §2.2
        self._token_reply = None
        try:
            await self._authlib.fetch_token(token_endpoint, grant_type=grant_type, **params)
        except httpx2.TransportError as exc:
            again = "try again" if grant_type == "refresh_token" else "log in again"
            msg = (
                f"Could not reach the token endpoint {token_endpoint} ({type(exc).__name__}: "
                f"{exc}). Check the network (and proxy settings), then {again}."
            )
            raise ServerUnreachable(msg) from exc
        except (OAuthError, httpx2.HTTPStatusError, ValueError) as exc:
            raise self._token_error(exc, grant_type) from exc
        reply = self._token_reply
        document = json_object(reply) if reply is not None else None
        if document is None:  # pragma: no cover  (authlib raised above)
            raise _invalid_token_response(reply, "the reply is not a JSON object", grant_type)
        try:
            return Token(document)
        except ValueError as exc:
            raise _invalid_token_response(reply, str(exc), grant_type) from exc

    def _token_error(self, exc: Exception, grant_type: str) -> TokenError:
        reply = self._token_reply
        document = json_object(reply) if reply is not None else None
        status = reply.status_code if reply is not None else None
        if document is not None and isinstance(document.get("error"), str):
            return TokenError(
                str(document["error"]),
                optional_str(document.get("error_description")),
                optional_str(document.get("error_uri")),
                status_code=status,
                grant_type=grant_type,
            )
        if isinstance(exc, OAuthError) and reply is None:
            # authlib refused before sending (e.g. a missing code).
            return TokenError(str(exc.error), optional_str(exc.description), grant_type=grant_type)
        return _invalid_token_response(
            reply, "the reply is not an RFC 6749 token response", grant_type
        )


def optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _invalid_token_response(
    reply: httpx2.Response | None, why: str, grant_type: str = "authorization_code"
) -> TokenError:
    status = reply.status_code if reply is not None else None
    return TokenError("invalid_token_response", why, status_code=status, grant_type=grant_type)


def check_pkce(url: str, code_verifier: str) -> None:
    """authlib adds PKCE only when told ``code_challenge_method="S256"``; never send a URL
    without it (RFC 7636 §4.3; OAuth 2.1 and the MCP specification require PKCE)."""
    params = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    challenges = [v for k, v in params if k == "code_challenge"]
    methods = [v for k, v in params if k == "code_challenge_method"]
    if challenges != [create_s256_code_challenge(code_verifier)] or methods != ["S256"]:
        msg = (
            "The authorization URL was built without a PKCE S256 code_challenge (RFC 7636), "
            "so it was not used. This is a bug in oauth-loopback or in the installed authlib; "
            "please report it with the authlib version."
        )
        raise OAuthLoopbackError(msg)


# Token and metadata documents are small; a megabyte is far more than any real one.
MAX_DOCUMENT: Final = 1024 * 1024


def json_object(response: httpx2.Response) -> dict[str, object] | None:
    if len(response.content) > MAX_DOCUMENT:
        return None
    try:
        value = json.loads(response.content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
