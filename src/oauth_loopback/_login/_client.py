"""The one module that talks to authlib's client (which ships no ``py.typed``).

Everything it returns is typed here and nothing untyped leaves it. authlib drops PKCE
silently when the client was not built with ``code_challenge_method="S256"``: the guard
below (``check_pkce``) refuses such a URL.
"""

from __future__ import annotations

import json
import logging
import ssl
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import httpx2
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .._errors import (
    ClientRejected,
    OAuthLoopbackError,
    PushedAuthorizationError,
    ServerUnreachable,
    TokenError,
)
from .._loopback import is_loopback_host
from ._dpop import DPoPKey, dpop_nonce, retry_nonce
from ._token import Token

# RFC 7636 §4.1: 43-128 characters; authlib's documented idiom gives 48.
VERIFIER_LENGTH: Final = 48
# Each HTTP request to the authorization server; a person is waiting, so fail in seconds
# rather than hang, but leave room for slow identity providers.
logger = logging.getLogger("oauth_loopback.oauth")

HTTP_TIMEOUT: Final = httpx2.Timeout(30.0, connect=10.0)
# The preflight of the authorization URL: a person is about to wait, so a few seconds at most.
_PREFLIGHT_TIMEOUT: Final = 5.0


class Client:
    """A typed wrapper around authlib's ``AsyncOAuth2Client`` (an ``httpx2.AsyncClient``)."""

    def __init__(
        self,
        *,
        issuer: str,
        redirect_uri: str,
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
        #: The authorization server's latest DPoP nonce (RFC 9449 §8), sent in the next proof.
        self.dpop_nonce: str | None = None
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

    @property
    def client_id(self) -> str:
        """The client ID requests are made as (set by :meth:`set_client`)."""
        return str(self._authlib.client_id or "")

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
        self,
        endpoint: str,
        *,
        state: str,
        code_verifier: str,
        resource: str | None,
        nonce: str | None = None,
        dpop_jkt: str | None = None,
    ) -> str:
        extra: dict[str, str] = {}
        if dpop_jkt is not None:
            extra["dpop_jkt"] = dpop_jkt  # RFC 9449 §10: the code is bound to this key
        if resource is not None:
            extra["resource"] = resource  # RFC 8707 §2.1
        if nonce is not None:
            extra["nonce"] = nonce  # OIDC Core §3.1.2.1: bound into the ID token
        url, _ = self._authlib.create_authorization_url(
            endpoint, state=state, code_verifier=code_verifier, **extra
        )
        return str(url)

    async def push_authorization(self, par_endpoint: str, authorization_url: str) -> str:
        """RFC 9126: push the authorization URL's parameters; return the browser's URL.

        The parameters (PKCE, state, redirect URI, resource, ...) go to the server over the
        back channel, with the client authenticated as at the token endpoint (§2.1); the
        browser is sent with only ``client_id`` and the ``request_uri`` the server made (§4).
        """
        parts = urlsplit(authorization_url)
        params = parse_qsl(parts.query, keep_blank_values=True)
        method = self._authlib.token_endpoint_auth_method
        auth = self._authlib.client_auth(method)
        client_id = dict(params).get("client_id", "")
        if method in ("none", "client_secret_post"):
            # authlib's client authentication adds client_id to the body itself: send it once.
            params = [(k, v) for k, v in params if k != "client_id"]
        try:
            reply = await self._authlib.request(
                "POST",
                par_endpoint,
                data=dict(params),
                auth=auth,
                withhold_token=True,
                headers={"Accept": "application/json"},
            )
        except httpx2.TransportError as exc:
            msg = (
                f"Could not reach the pushed authorization request endpoint {par_endpoint} "
                f"({type(exc).__name__}: {exc}). Check the network, then log in again."
            )
            raise ServerUnreachable(msg) from exc
        assert isinstance(reply, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        document = json_object(reply)
        if reply.status_code not in (200, 201) or document is None:
            error = document.get("error") if document is not None else None
            raise PushedAuthorizationError(
                error if isinstance(error, str) else "invalid_par_response",
                optional_str(document.get("error_description")) if document else None,
                status_code=reply.status_code,
            )
        request_uri = document.get("request_uri")
        if not isinstance(request_uri, str) or not request_uri:
            error = "invalid_par_response"
            raise PushedAuthorizationError(
                error, "the reply has no request_uri", status_code=reply.status_code
            )
        query = urlencode({"client_id": client_id, "request_uri": request_uri})
        return urlunsplit((parts.scheme, parts.netloc, parts.path, query, ""))

    async def preflight(self, authorization_url: str, redirect_uri: str, client_id: str) -> None:
        """Ask for the authorization URL once, following no redirect, before the browser does.

        A server that will not send the user back (an unknown or stale ``client_id``, a
        redirect URI it does not accept) answers with an error page (4xx/5xx) or redirects
        with ``error=`` at once; failing here takes a second instead of the whole timeout
        while the user stares at the server's error page. Anything else (a login page, a
        redirect to one) passes; so does a server that cannot be reached from here (the
        browser may still reach it). Never used with PAR: a ``request_uri`` is single-use.

        :raises ClientRejected: the server refused the request before any user interaction.
        """
        try:
            with anyio.fail_after(_PREFLIGHT_TIMEOUT):
                reply = await self._authlib.request(
                    "GET", authorization_url, withhold_token=True, follow_redirects=False
                )
        except (httpx2.HTTPError, TimeoutError) as exc:
            logger.info("preflight of the authorization URL skipped: %s", type(exc).__name__)
            return
        assert isinstance(reply, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        endpoint = authorization_url.partition("?")[0]
        if reply.is_redirect:
            location = reply.headers.get("location", "")
            if location.partition("?")[0] == redirect_uri:
                return  # an authorization response at once (auto-approve, denial): the browser gets it too
            params = dict(parse_qsl(urlsplit(location).query))
            if "error" in params:
                raise ClientRejected(
                    client_id,
                    endpoint,
                    status_code=reply.status_code,
                    error=params["error"],
                    description=params.get("error_description"),
                )
            return
        if reply.status_code >= 400:
            raise ClientRejected(client_id, endpoint, status_code=reply.status_code)

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
        dpop_key: DPoPKey | None = None,
    ) -> Token:
        """The authorization code grant's token request (RFC 6749 §4.1.3, RFC 7636 §4.5)."""
        form = {"code": code, "code_verifier": code_verifier, "redirect_uri": redirect_uri}
        if resource is not None:
            form["resource"] = resource  # RFC 8707 §2.2
        # grant_type explicit: authlib would guess it and remember the guess.
        # redirect_uri: identical to the authorization request's (RFC 6749 §4.1.3).
        return await self.token_request(
            token_endpoint, grant_type="authorization_code", form=form, dpop_key=dpop_key
        )

    async def token_request(
        self,
        token_endpoint: str,
        *,
        grant_type: str,
        form: Mapping[str, str],
        dpop_key: DPoPKey | None = None,
    ) -> Token:
        """One token request, with a DPoP proof when ``dpop_key`` is given (RFC 9449 §5).

        A ``use_dpop_nonce`` answer is retried once with the server's nonce (§8); the latest
        nonce is kept for the next request to this server. With a key, the token must come
        back as ``token_type: DPoP`` (§5): a Bearer token would not be bound to the key.
        """
        retried = False
        while True:
            headers: dict[str, str] | None = None
            if dpop_key is not None:
                proof = dpop_key.proof("POST", token_endpoint, nonce=self.dpop_nonce)
                headers = {**_FORM_HEADERS, "DPoP": proof}
            self._token_reply = None
            try:
                await self._authlib.fetch_token(
                    token_endpoint, grant_type=grant_type, headers=headers, **form
                )
            except httpx2.TransportError as exc:
                msg = (
                    f"Could not reach the token endpoint {token_endpoint} "
                    f"({type(exc).__name__}: {exc}). Check the network (and proxy settings), "
                    f"then log in again."
                )
                raise ServerUnreachable(msg) from exc
            except (OAuthError, httpx2.HTTPStatusError, ValueError) as exc:
                reply = self._token_reply
                if dpop_key is not None and reply is not None:
                    nonce = retry_nonce(
                        reply.status_code,
                        reply.headers,
                        reply.content,
                        sent_nonce=self.dpop_nonce,
                        retried=retried,
                    )
                    if nonce is not None:
                        self.dpop_nonce, retried = nonce, True
                        continue
                raise self._token_error(exc) from exc
            break
        reply = self._token_reply
        if reply is not None and dpop_key is not None:
            self.dpop_nonce = dpop_nonce(reply.headers) or self.dpop_nonce
        document = json_object(reply) if reply is not None else None
        if document is None:  # pragma: no cover  (authlib raised above)
            raise _invalid_token_response(reply, "the reply is not a JSON object")
        try:
            token = Token(document)
        except ValueError as exc:
            raise _invalid_token_response(reply, str(exc)) from exc
        if dpop_key is not None:
            if token.token_type.lower() != "dpop":
                raise _invalid_token_response(
                    reply,
                    f"a DPoP proof was sent but the server issued a {token.token_type!r} token, "
                    f"which is not bound to the key (RFC 9449 §5); pass dpop=False to accept "
                    f"bearer tokens from this server",
                )
            token.dpop_key = dpop_key
        return token

    def _token_error(self, exc: Exception) -> TokenError:
        reply = self._token_reply
        document = json_object(reply) if reply is not None else None
        status = reply.status_code if reply is not None else None
        if document is not None and isinstance(document.get("error"), str):
            return TokenError(
                str(document["error"]),
                optional_str(document.get("error_description")),
                optional_str(document.get("error_uri")),
                status_code=status,
            )
        if isinstance(exc, OAuthError) and reply is None:
            # authlib refused before sending (e.g. a missing code).
            return TokenError(str(exc.error), optional_str(exc.description))
        return _invalid_token_response(reply, "the reply is not an RFC 6749 token response")


def optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _invalid_token_response(reply: httpx2.Response | None, why: str) -> TokenError:
    status = reply.status_code if reply is not None else None
    return TokenError("invalid_token_response", why, status_code=status)


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


# authlib's default token request headers, kept when a DPoP header is added.
_FORM_HEADERS: Final = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
}
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
