"""TokenAuth: an ``httpx2.Auth`` that sends a stored token, keeps it fresh, and steps up.

Each request gets the token from :func:`get_token`: the stored one while it is valid, else a
refreshed one, else a login. Then, as the resource server answers:

- ``Authorization: Bearer <token>`` (RFC 6750 §2.1), or for a DPoP-bound token
  ``Authorization: DPoP <token>`` with a fresh proof per request (RFC 9449 §7: ``htm``,
  ``htu``, ``ath``, and the resource server's nonce once it has given one);
- 401 ``use_dpop_nonce`` (RFC 9449 §9): signed again with the server's nonce, once;
- 401 otherwise (RFC 6750 §3.1: expired early, revoked): the refused token is set aside and
  the request sent once more with a new one (refreshed if possible, else a login);
- 403 ``insufficient_scope`` (RFC 6750 §3.1, the MCP specification's step-up): a login for the
  union of the scopes asked so far and the challenged ones, at most :data:`MAX_STEP_UPS`
  times per ``TokenAuth``, then :class:`InsufficientScope` naming both.

Anything else, and a second refusal, is returned to the caller as it came.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

import anyio
import httpx2

from .._errors import InsufficientScope, OAuthLoopbackError
from ._get_token import obtain
from ._resource import bearer_challenge, merge_scopes
from ._token import Token

if TYPE_CHECKING:
    from .._config import CallbackConfig
    from .._store._protocol import TokenStore
    from ._authorize import ShowURL
    from ._browser import BrowserOpener

__all__ = ["MAX_STEP_UPS", "TokenAuth"]

logger = logging.getLogger("oauth_loopback.oauth")

#: Step-up logins one TokenAuth makes on 403 insufficient_scope before giving up: a server
#: that keeps asking for more after the user granted it is not going to be satisfied.
MAX_STEP_UPS: Final = 2


class TokenAuth(httpx2.Auth):
    """Authenticate ``httpx2`` requests with the stored login to ``issuer``, as ``auth=``.

    ::

        auth = ol.TokenAuth("https://auth.example.com", store=ol.FileTokenStore())
        async with httpx2.AsyncClient(auth=auth) as http:
            reply = await http.get("https://api.example.com/me")

    The keywords are :func:`get_token`'s. With an ``httpx2.AsyncClient`` everything runs on
    the caller's event loop (asyncio or trio). With a blocking ``httpx2.Client`` each token
    lookup runs in its own short event loop (``anyio.run``), so it must not be used from a
    thread that is already running one. Request bodies are buffered, so that a request refused
    with 401 can be sent again.
    """

    # The request may be sent twice (after a 401), so its body must be replayable.
    requires_request_body = True

    def __init__(
        self,
        issuer: str | None = None,
        *,
        store: TokenStore,
        client_id: str | None = None,
        client_secret: str | None = None,
        scope: str | None = None,
        resource: str | None = None,
        config: CallbackConfig | None = None,
        open_browser: BrowserOpener | None = None,
        timeout: float | None = None,
        paste: bool = False,
        show_url: ShowURL | None = None,
        browser_command: str | None = None,
        transport: httpx2.AsyncBaseTransport | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        if issuer is None and resource is None:
            msg = "TokenAuth needs the issuer, or resource= to discover it from (RFC 9728)."
            raise TypeError(msg)
        self.issuer = issuer
        self.resource = resource
        self._store = store
        self.scope = scope
        self._step_ups = 0
        # The latest DPoP nonce of each resource server (RFC 9449 §9), by origin.
        self._nonces: dict[str, str] = {}
        self._transport = transport
        # Resource-first (issuer None): found through the resource's RFC 9728 metadata on
        # first use, and again after a refusal (the resource may have moved servers).
        self._discover = issuer is None
        self._obtain = functools.partial(
            obtain,
            store=store,
            client_id=client_id,
            client_secret=client_secret,
            resource=resource,
            config=config,
            open_browser=open_browser,
            timeout=timeout,
            paste=paste,
            show_url=show_url,
            browser_command=browser_command,
            transport=transport,
            metadata=metadata,
        )

    def __repr__(self) -> str:
        return (
            f"TokenAuth(issuer={self.issuer!r}, resource={self.resource!r}, store={self._store!r})"
        )

    async def _token(self, refused: str | None) -> Token:
        if self._discover and (self.issuer is None or refused is not None):
            from ._get_token import _issuer_for

            self.issuer, self.scope = await _issuer_for(
                self.resource, self.scope, self._store, self._transport
            )
        if self.issuer is None:  # pragma: no cover  (_issuer_for returned one)
            msg = "TokenAuth needs an issuer, or resource= to discover it from (RFC 9728)."
            raise TypeError(msg)
        return await self._obtain(self.issuer, refused=refused, scope=self.scope)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await request.aread()
        token = await self._token(None)
        renewed = False
        for _attempt in range(2 + MAX_STEP_UPS):  # bounded: each retry has its own reason
            response = yield self._sign(request, token)
            if self._nonce_retry(request, response):
                response = yield self._sign(request, token)
            renew = self._next_step(response, token, renewed=renewed)
            if renew is None:
                return
            renewed = renewed or bool(renew)
            token = await self._token(renew or None)

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        request.read()
        token = self._run(None)
        renewed = False
        for _attempt in range(2 + MAX_STEP_UPS):
            response = yield self._sign(request, token)
            if self._nonce_retry(request, response):
                response = yield self._sign(request, token)
            renew = self._next_step(response, token, renewed=renewed)
            if renew is None:
                return
            renewed = renewed or bool(renew)
            token = self._run(renew or None)

    def _sign(self, request: httpx2.Request, token: Token) -> httpx2.Request:
        if token.dpop_key is not None:
            # RFC 9449 §7.1: the DPoP scheme, and a proof bound to this request and token.
            nonce = self._nonces.get(_origin(request.url))
            request.headers["Authorization"] = f"DPoP {token.access_token}"
            request.headers["DPoP"] = token.dpop_key.proof(
                request.method, str(request.url), access_token=token.access_token, nonce=nonce
            )
            return request
        if token.token_type.lower() != "bearer":
            msg = (
                f"The server issued a {token.token_type!r} token without the key it is bound "
                f"to, so it cannot be sent (RFC 6750, RFC 9449). Log in again."
            )
            raise OAuthLoopbackError(msg)
        request.headers["Authorization"] = f"Bearer {token.access_token}"  # RFC 6750 §2.1
        return request

    def _nonce_retry(self, request: httpx2.Request, response: httpx2.Response) -> bool:
        """Keep the resource server's DPoP nonce; True when the request asks to be re-signed."""
        from ._dpop import dpop_nonce, is_use_dpop_nonce

        if "DPoP" not in request.headers:
            return False
        origin = _origin(request.url)
        nonce = dpop_nonce(response.headers)
        previous = self._nonces.get(origin)
        if nonce is not None:
            self._nonces[origin] = nonce
        return (
            nonce is not None
            and nonce != previous
            and is_use_dpop_nonce(response.status_code, response.headers)
        )

    def _next_step(self, response: httpx2.Response, token: Token, *, renewed: bool) -> str | None:
        """What the answer asks for: None (done), the refused token, or "" (step up)."""
        if response.status_code == 401:
            if renewed:
                return None  # a second 401, with a new token: the caller's to handle
            logger.info("the resource server refused the access token (HTTP 401); renewing it")
            return token.access_token
        if response.status_code != 403:
            return None
        challenge = bearer_challenge(response.headers)
        if challenge is None or not challenge.insufficient_scope:
            return None
        wanted = merge_scopes(self.scope, challenge.scope)
        if self._step_ups >= MAX_STEP_UPS or wanted == self.scope:
            raise InsufficientScope(
                asked=self.scope, granted=token.scope, challenged=challenge.scope
            )
        self._step_ups += 1
        logger.info("the resource server asks for more scope (403 insufficient_scope); stepping up")
        self.scope = wanted
        return ""

    def _run(self, refused: str | None) -> Token:
        try:
            anyio.get_current_task()
        except RuntimeError:
            pass  # no event loop in this thread: anyio.run may start one
        else:
            msg = (
                "TokenAuth was used with a blocking httpx2.Client inside a running event loop, "
                "where it cannot wait for a token without blocking the loop. Use "
                "httpx2.AsyncClient(auth=...) there."
            )
            raise OAuthLoopbackError(msg)
        return anyio.run(functools.partial(self._token, refused))


def _origin(url: httpx2.URL) -> str:
    parts = urlsplit(str(url))
    return f"{parts.scheme}://{parts.netloc}"
