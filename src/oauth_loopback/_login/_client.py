"""The one module that talks to authlib's client (which ships no ``py.typed``).

Everything it returns is typed here and nothing untyped leaves it. authlib drops PKCE
silently when the client was not built with ``code_challenge_method="S256"``: the guard
below (``check_pkce``) refuses such a URL.

Two HTTP clients, the same settings: the requests a login makes before the browser opens
(discovery, registration, the preflight) are plain ``httpx2`` requests, and the URL is built
with authlib's RFC 6749 and RFC 7636 functions; authlib's ``AsyncOAuth2Client`` (client
authentication, the token grants), whose import pulls in its OpenID and JOSE layers (tens of
milliseconds), is loaded on first use, and :meth:`Client.warm_up` loads it in a worker thread
while the user is in the browser (benchmarks/: time to browser).
"""

from __future__ import annotations

import importlib
import json
import logging
import ssl
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import anyio
import anyio.to_thread
import httpx2
from authlib.oauth2.rfc6749.parameters import prepare_grant_uri
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from .._errors import (
    ClientRejected,
    OAuthLoopbackError,
    PushedAuthorizationError,
    ServerUnreachable,
    TokenError,
)
from .._loopback import is_loopback_host
from ._dpop_wire import dpop_nonce, retry_nonce
from ._token import Token

if TYPE_CHECKING:
    from ._dpop import DPoPKey

# RFC 7636 §4.1: 43-128 characters; authlib's documented idiom gives 48.
VERIFIER_LENGTH: Final = 48
# Each HTTP request to the authorization server; a person is waiting, so fail in seconds
# rather than hang, but leave room for slow identity providers.
logger = logging.getLogger("oauth_loopback.oauth")

HTTP_TIMEOUT: Final = httpx2.Timeout(30.0, connect=10.0)
# The preflight of the authorization URL: a person is about to wait, so a few seconds at most.
_PREFLIGHT_TIMEOUT: Final = 5.0


def _authlib_client_class() -> Any:
    """authlib's ``AsyncOAuth2Client`` (its package imports authlib's OpenID client, joserfc
    and cryptography: run where a blocked thread costs nobody, see :meth:`Client.warm_up`)."""
    from authlib.integrations.httpx_client import AsyncOAuth2Client

    return AsyncOAuth2Client


def _oauth_error_class() -> type[Exception]:
    from authlib.integrations.base_client import OAuthError

    error: type[Exception] = OAuthError
    return error


class Client:
    """The login's HTTP client: plain ``httpx2`` requests, and authlib's ``AsyncOAuth2Client``
    (an ``httpx2.AsyncClient`` with the same settings) for the token endpoint."""

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
        # One CA store for both clients, loaded once (in __aenter__), as httpx2 would load it.
        self._load_ca_store = verify is True and transport is None
        self._redirect_uri = redirect_uri
        self._scope = scope
        self._client_id: str | None = None
        self._client_secret: str | None = None
        self._auth_method = "none"
        self._settings: dict[str, Any] = {
            "transport": transport,
            "trust_env": trust_env,
            "verify": verify,
            "timeout": HTTP_TIMEOUT,
            "follow_redirects": False,
        }
        self._http: httpx2.AsyncClient  # created by __aenter__
        self._authlib_client: Any = None
        self._authlib_lock = anyio.Lock()
        self._token_reply: httpx2.Response | None = None
        #: The authorization server's latest DPoP nonce (RFC 9449 §8), sent in the next proof.
        self.dpop_nonce: str | None = None

    async def __aenter__(self) -> Client:
        # Off the event loop: the first client of a process imports httpx2's transport
        # (httpcore2, and trio where it is installed) and an https one loads the CA store,
        # tens of milliseconds each, during which a long-running program's other tasks (an
        # MCP client's sessions, the receiver) would not run.
        if self._load_ca_store:
            trust_env = self._settings["trust_env"]
            self._settings["verify"] = await anyio.to_thread.run_sync(
                lambda: httpx2.create_ssl_context(trust_env=trust_env)
            )
        elif "httpcore2" not in sys.modules and self._settings["transport"] is None:
            await anyio.to_thread.run_sync(importlib.import_module, "httpcore2")
        self._http = httpx2.AsyncClient(**self._settings)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        try:
            await self._http.aclose()
        finally:
            if self._authlib_client is not None:
                await self._authlib_client.aclose()

    async def warm_up(self) -> None:
        """Load authlib's client now (its import runs in a worker thread), so that the token
        request does not wait for it: the login calls this once the browser is on its way."""
        await self._authlib()

    async def _authlib(self) -> Any:
        """authlib's ``AsyncOAuth2Client``, created on first use with this client's settings."""
        if self._authlib_client is None:
            async with self._authlib_lock:
                if self._authlib_client is None:
                    # The import is CPU-bound module execution: on the event loop it would
                    # stall every other task (the receiver answering the browser) meanwhile.
                    cls = await anyio.to_thread.run_sync(_authlib_client_class)
                    oauth = cls(
                        client_id=self._client_id,
                        client_secret=self._client_secret,
                        token_endpoint_auth_method=self._auth_method,
                        redirect_uri=self._redirect_uri,
                        scope=self._scope,
                        code_challenge_method="S256",
                        **self._settings,
                    )
                    oauth.register_compliance_hook("access_token_response", self._keep_token_reply)
                    self._authlib_client = oauth
        return self._authlib_client

    @property
    def client_id(self) -> str:
        """The client ID requests are made as (set by :meth:`set_client`)."""
        return self._client_id or ""

    def set_client(
        self, client_id: str, client_secret: str | None, auth_method: str | None
    ) -> None:
        if auth_method is None:
            auth_method = "client_secret_basic" if client_secret else "none"
        self._client_id = client_id
        self._client_secret = client_secret
        self._auth_method = auth_method
        if self._authlib_client is not None:
            self._authlib_client.client_id = client_id
            self._authlib_client.client_secret = client_secret
            self._authlib_client.token_endpoint_auth_method = auth_method

    async def get(self, url: str) -> httpx2.Response:
        return await self._http.get(url, headers={"Accept": "application/json"})

    async def post_json(self, url: str, body: Mapping[str, object]) -> httpx2.Response:
        return await self._http.post(url, json=dict(body), headers={"Accept": "application/json"})

    async def post_form(self, url: str, form: Mapping[str, str]) -> httpx2.Response:
        """A form POST with the client authenticated as at the token endpoint (RFC 6749 §2.3)."""
        oauth = await self._authlib()
        auth = oauth.client_auth(self._auth_method)
        try:
            response = await oauth.request(
                "POST",
                url,
                data=dict(form),
                auth=auth,
                withhold_token=True,
                # Explicit: with an empty form httpx2 sets no content type, and the client
                # authentication then adds client_id to a body the server cannot read.
                headers=_FORM_HEADERS,
            )
        except httpx2.TransportError as exc:
            msg = f"Could not reach {url} ({type(exc).__name__}: {exc}). Check the network."
            raise ServerUnreachable(msg) from exc
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
        """The authorization request (RFC 6749 §4.1.1) with PKCE S256 (RFC 7636 §4.3), built
        by authlib's ``prepare_grant_uri`` in the order its ``create_authorization_url`` uses."""
        extra: dict[str, str] = {
            "code_challenge": create_s256_code_challenge(code_verifier),
            "code_challenge_method": "S256",
        }
        if dpop_jkt is not None:
            extra["dpop_jkt"] = dpop_jkt  # RFC 9449 §10: the code is bound to this key
        if resource is not None:
            extra["resource"] = resource  # RFC 8707 §2.1
        if nonce is not None:
            extra["nonce"] = nonce  # OIDC Core §3.1.2.1: bound into the ID token
        url = prepare_grant_uri(
            endpoint,
            client_id=self._client_id,
            response_type="code",
            redirect_uri=self._redirect_uri,
            scope=self._scope,
            state=state,
            **extra,
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
        method = self._auth_method
        oauth = await self._authlib()
        auth = oauth.client_auth(method)
        client_id = dict(params).get("client_id", "")
        if method in ("none", "client_secret_post"):
            # authlib's client authentication adds client_id to the body itself: send it once.
            params = [(k, v) for k, v in params if k != "client_id"]
        try:
            reply = await oauth.request(
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
            with anyio.fail_after(_PREFLIGHT_TIMEOUT), unlogged_query(authorization_url):
                reply = await self._http.get(authorization_url, follow_redirects=False)
        except (httpx2.HTTPError, TimeoutError) as exc:
            logger.info("preflight of the authorization URL skipped: %s", type(exc).__name__)
            return
        assert isinstance(reply, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        endpoint = authorization_url.partition("?")[0]
        error: str | None = None
        description: str | None = None
        if reply.is_redirect:
            location = reply.headers.get("location", "")
            if location.partition("?")[0] == redirect_uri:
                return  # an authorization response at once (auto-approve, denial): the browser gets it too
            params = dict(parse_qsl(urlsplit(location).query))
            if "error" not in params:
                return  # on to a sign-in page
            error, description = params["error"], params.get("error_description")
            said = f"redirected with error={error!r}" + (f": {description}" if description else "")
        elif reply.status_code >= 400:
            said = f"answered HTTP {reply.status_code} (an error page)"
        else:
            return
        msg = (
            f"The authorization server refused the sign-in request for client {client_id!r} "
            f"before the browser opened: {endpoint} {said}. The client ID may be unknown to "
            f"the server, or registered with another redirect URI. Register the client again "
            f"(or let oauth-loopback register one: pass no client_id), or pass the client_id "
            f"the server knows."
        )
        raise ClientRejected(
            msg,
            client_id=client_id,
            redirect_uri=redirect_uri,
            error=error,
            description=description,
            status_code=reply.status_code,
        )

    async def revoke(self, endpoint: str, token: str, hint: str) -> str | None:
        """RFC 7009 §2.1: revoke ``token``; None on success (§2.2: 200), else why not."""
        oauth = await self._authlib()
        auth = oauth.client_auth(self._auth_method)
        try:
            reply = await oauth.request(
                "POST",
                endpoint,
                data={"token": token, "token_type_hint": hint},
                auth=auth,
                withhold_token=True,
            )
        except httpx2.TransportError as exc:
            return f"{endpoint} did not answer: {type(exc).__name__}"
        assert isinstance(reply, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        if reply.status_code == 200:
            return None
        document = json_object(reply)
        error = document.get("error") if document is not None else None
        return f"{endpoint} answered HTTP {reply.status_code}" + (
            f" error={error!r}" if error else ""
        )

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

    async def refresh(
        self,
        token_endpoint: str,
        *,
        refresh_token: str,
        resource: str | None,
        dpop_key: DPoPKey | None = None,
    ) -> Token:
        """RFC 6749 §6: a new access token for a refresh token.

        No ``scope`` is sent (§6: omitted means the scope originally granted) and no redirect
        URI (the refresh grant has none, so a changed loopback port never matters here). A
        DPoP-bound refresh token needs a proof with its key (RFC 9449 §5).
        """
        form = {"refresh_token": refresh_token}
        if resource is not None:
            form["resource"] = resource  # RFC 8707 §2.2
        return await self.token_request(
            token_endpoint, grant_type="refresh_token", form=form, dpop_key=dpop_key
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
        oauth = await self._authlib()
        oauth_error = _oauth_error_class()
        retried = False
        while True:
            headers: dict[str, str] | None = None
            if dpop_key is not None:
                proof = dpop_key.proof("POST", token_endpoint, nonce=self.dpop_nonce)
                headers = {**_FORM_HEADERS, "DPoP": proof}
            self._token_reply = None
            try:
                await oauth.fetch_token(
                    token_endpoint, grant_type=grant_type, headers=headers, **form
                )
            except httpx2.TransportError as exc:
                again = "try again" if grant_type == "refresh_token" else "log in again"
                msg = (
                    f"Could not reach the token endpoint {token_endpoint} "
                    f"({type(exc).__name__}: {exc}). Check the network (and proxy settings), "
                    f"then {again}."
                )
                raise ServerUnreachable(msg) from exc
            except (oauth_error, httpx2.HTTPStatusError, ValueError) as exc:
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
                raise self._token_error(exc, grant_type, oauth_error) from exc
            break
        reply = self._token_reply
        if reply is not None and dpop_key is not None:
            self.dpop_nonce = dpop_nonce(reply.headers) or self.dpop_nonce
        document = json_object(reply) if reply is not None else None
        if document is None:  # pragma: no cover  (authlib raised above)
            raise _invalid_token_response(reply, "the reply is not a JSON object", grant_type)
        try:
            token = Token(document)
        except ValueError as exc:
            raise _invalid_token_response(reply, str(exc), grant_type) from exc
        if dpop_key is not None:
            if token.token_type.lower() != "dpop":
                raise _invalid_token_response(
                    reply,
                    f"a DPoP proof was sent but the server issued a {token.token_type!r} token, "
                    f"which is not bound to the key (RFC 9449 §5); pass dpop=False to accept "
                    f"bearer tokens from this server",
                    grant_type,
                )
            token.dpop_key = dpop_key
        return token

    def _token_error(
        self, exc: Exception, grant_type: str, oauth_error: type[Exception]
    ) -> TokenError:
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
        if isinstance(exc, oauth_error) and reply is None:
            # authlib refused before sending (e.g. a missing code).
            return TokenError(
                str(getattr(exc, "error", "invalid_request")),
                optional_str(getattr(exc, "description", None)),
                grant_type=grant_type,
            )
        return _invalid_token_response(
            reply, "the reply is not an RFC 6749 token response", grant_type
        )


class _RedactQueries(logging.Filter):
    """httpx2 logs every request's URL at INFO (``HTTP Request: GET <url> ...``). The preflight's
    URL is the authorization request, whose query holds this login's ``state`` (and PKCE
    challenge, nonce): while it is in flight, its line is logged without the query. Records
    of any other URL pass unchanged."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if self.urls and isinstance(args, tuple) and len(args) > 1 and str(args[1]) in self.urls:
            where = str(args[1]).partition("?")[0]
            record.args = (args[0], f"{where}?<query not logged>", *args[2:])
        return True


_REDACT_QUERIES = _RedactQueries()


@contextmanager
def unlogged_query(url: str) -> Iterator[None]:
    """Keep ``url``'s query out of httpx2's request log while the block runs."""
    if _REDACT_QUERIES not in logging.getLogger("httpx2").filters:
        logging.getLogger("httpx2").addFilter(_REDACT_QUERIES)
    spelled = str(httpx2.URL(url))  # as httpx2 logs it
    _REDACT_QUERIES.urls.add(spelled)
    try:
        yield
    finally:
        _REDACT_QUERIES.urls.discard(spelled)


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
