"""TokenAuth: an ``httpx2.Auth`` that sends a stored bearer token and keeps it fresh.

Each request gets ``Authorization: Bearer <token>`` (RFC 6750 §2.1) from :func:`get_token`: the
stored token while it is valid, else a refreshed one, else a login. When the resource server
still answers 401 (RFC 6750 §3.1: the token expired early or was revoked), the refused token is
set aside and the request is sent once more with a new one: refreshed if the refresh token
still works, and only if it does not, from a new login. A second 401 is returned to the caller.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import AsyncGenerator, Generator, Mapping
from typing import TYPE_CHECKING

import anyio
import httpx2

from .._errors import OAuthLoopbackError
from ._get_token import obtain
from ._token import Token

if TYPE_CHECKING:
    from .._config import CallbackConfig
    from .._store._protocol import TokenStore
    from ._authorize import ShowURL
    from ._browser import BrowserOpener

__all__ = ["TokenAuth"]

logger = logging.getLogger("oauth_loopback.oauth")


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
        issuer: str,
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
        transport: httpx2.AsyncBaseTransport | None = None,
        metadata: Mapping[str, object] | None = None,
    ) -> None:
        self.issuer = issuer
        self.resource = resource
        self._store = store
        self._obtain = functools.partial(
            obtain,
            issuer,
            store=store,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            resource=resource,
            config=config,
            open_browser=open_browser,
            timeout=timeout,
            paste=paste,
            show_url=show_url,
            transport=transport,
            metadata=metadata,
        )

    def __repr__(self) -> str:
        return (
            f"TokenAuth(issuer={self.issuer!r}, resource={self.resource!r}, store={self._store!r})"
        )

    async def _token(self, refused: str | None) -> Token:
        return await self._obtain(refused=refused)

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        await request.aread()
        token = await self._token(None)
        _authorize(request, token)
        response = yield request
        if response.status_code != 401:
            return
        logger.info("the resource server refused the access token (HTTP 401); renewing it")
        token = await self._token(token.access_token)
        _authorize(request, token)
        yield request

    def sync_auth_flow(self, request: httpx2.Request) -> Generator[httpx2.Request, httpx2.Response]:
        request.read()
        token = self._run(None)
        _authorize(request, token)
        response = yield request
        if response.status_code != 401:
            return
        logger.info("the resource server refused the access token (HTTP 401); renewing it")
        token = self._run(token.access_token)
        _authorize(request, token)
        yield request

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


def _authorize(request: httpx2.Request, token: Token) -> None:
    # RFC 6750 §2.1. Only bearer tokens: a DPoP-bound token (RFC 9449) needs a proof per
    # request, which this class does not make.
    if token.token_type.lower() != "bearer":
        msg = (
            f"The server issued a {token.token_type!r} token, and TokenAuth sends bearer tokens "
            f"only (RFC 6750). Use get_token() and authenticate the requests yourself."
        )
        raise OAuthLoopbackError(msg)
    request.headers["Authorization"] = f"Bearer {token.access_token}"
