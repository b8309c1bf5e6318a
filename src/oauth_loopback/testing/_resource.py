"""An MCP-style protected resource for tests, guarded by an embedded AuthorizationServer.

It answers like an MCP server's HTTP endpoint does under the MCP authorization
specification: ``401`` with ``WWW-Authenticate: Bearer resource_metadata="…"`` (RFC 9728
§5.1) and optionally ``scope="…"`` without a valid token; ``403`` with
``error="insufficient_scope"`` (RFC 6750 §3.1) when the token lacks a required scope; its
RFC 9728 metadata at ``/.well-known/oauth-protected-resource<path>``; and ``200`` with a small
JSON body once the token is good (issued by that server, not expired or revoked, and, when it
names resources, issued for this one: RFC 8707)::

    async with AuthorizationServer() as server, ProtectedResource(server, required_scope="mcp:read") as mcp:
        token = await oauth_loopback.get_token(resource=mcp.url, ...)
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

from anyio.abc import SocketAttribute, SocketListener

from .._receiver._tasks import background
from ._http import HttpRequest, HttpResponse, HttpServer, bind_loopback

if TYPE_CHECKING:
    from . import AuthorizationServer

__all__ = ["ProtectedResource"]

logger = logging.getLogger("oauth_loopback.testing")


class ProtectedResource:
    """A protected resource on ``127.0.0.1`` (port 0) whose tokens come from ``server``.

    :param path: where the resource lives (its URL is ``http://127.0.0.1:<port><path>``).
    :param required_scope: space-separated scopes a token needs, else ``403 insufficient_scope``.
    :param scopes_supported: the RFC 9728 ``scopes_supported`` to publish (None: omitted).
    :param challenge_scope: put ``scope=`` (the required scopes) in the 401 challenge.
    :param advertise_metadata: put ``resource_metadata=`` in the 401 challenge; False makes
        clients fall back to the well-known URLs.
    :param metadata_resource: publish this ``resource`` instead of our own URL (to test that
        clients refuse metadata that speaks for another resource, RFC 9728 §3.3).
    """

    def __init__(
        self,
        server: AuthorizationServer,
        *,
        path: str = "/mcp",
        required_scope: str | None = None,
        scopes_supported: Sequence[str] | None = None,
        challenge_scope: bool = True,
        advertise_metadata: bool = True,
        metadata_resource: str | None = None,
    ) -> None:
        if not path.startswith("/"):
            msg = f"path must start with '/', such as '/mcp', not {path!r}."
            raise ValueError(msg)
        self._server = server
        self._path = path.rstrip("/") or "/"
        self._required = tuple((required_scope or "").split())
        self._scopes_supported = None if scopes_supported is None else list(scopes_supported)
        self._challenge_scope = challenge_scope
        self._advertise = advertise_metadata
        self._metadata_resource = metadata_resource
        self._port: int | None = None
        self._stack: AsyncExitStack | None = None
        #: (method, path, status) of every request, for assertions in tests.
        self.requests: list[tuple[str, str, int]] = []

    def __repr__(self) -> str:
        return f"<ProtectedResource {self.url if self._port else 'not started'}>"

    @property
    def url(self) -> str:
        """The resource's URL: what a client passes as ``resource=`` (RFC 8707)."""
        if self._port is None:
            msg = "The resource is not running yet: use it inside 'async with ProtectedResource(...)'."
            raise RuntimeError(msg)
        return f"http://127.0.0.1:{self._port}{self._path}"

    @property
    def metadata_url(self) -> str:
        """Where its RFC 9728 metadata is served (the path-aware well-known URL, §3.1)."""
        base = f"http://127.0.0.1:{self._port}/.well-known/oauth-protected-resource"
        return base if self._path == "/" else base + self._path

    @property
    def metadata(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "resource": self._metadata_resource or self.url,
            "authorization_servers": [self._server.issuer],
            "bearer_methods_supported": ["header"],
        }
        if self._scopes_supported is not None:
            document["scopes_supported"] = list(self._scopes_supported)
        return document

    async def __aenter__(self) -> ProtectedResource:
        if self._stack is not None:
            msg = "This ProtectedResource is already running; create a new one per block."
            raise RuntimeError(msg)
        stack = AsyncExitStack()
        await stack.enter_async_context(self._serve())
        self._stack = stack
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        stack, self._stack = self._stack, None
        if stack is None:
            return None
        return await stack.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _serve(self) -> AsyncIterator[None]:
        sock = bind_loopback()
        try:
            listener = await SocketListener.from_socket(sock)
        except BaseException:
            sock.close()
            raise
        self._port = listener.extra(SocketAttribute.local_port)  # noqa: S610  (anyio's)
        http = HttpServer(self._handle)
        async with background() as tg:
            tg.start_soon(http.accept_loop, listener, tg)
            yield

    # --- request handling (synchronous) ----------------------------------------------------

    def _handle(self, request: HttpRequest) -> HttpResponse:
        response = self._answer(request)
        self.requests.append((request.method, request.path, response.status))
        return response

    def _answer(self, request: HttpRequest) -> HttpResponse:
        host = request.headers.get("host", "")
        if host not in (f"127.0.0.1:{self._port}", f"localhost:{self._port}"):
            return _json(421, {"error": "misdirected_request"})
        if request.path == self.metadata_url.removeprefix(f"http://127.0.0.1:{self._port}"):
            return _json(200, self.metadata)
        if request.path != self._path:
            return _json(404, {"error": "not_found"})
        authorization = request.headers.get("authorization", "")
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            return self._challenge(401, None)
        token = self._find(value.strip())
        if token is None:
            return self._challenge(401, "invalid_token")
        granted = set(token.scope.split())
        missing = [s for s in self._required if s not in granted]
        if missing:
            return self._challenge(403, "insufficient_scope")
        body = {"ok": True, "scope": token.scope, "client_id": token.client_id}
        return _json(200, body)

    def _find(self, access_token: str) -> Any:
        backend = self._server._require_backend()
        for record in backend.tokens:
            if record.access_token != access_token:
                continue
            if record.is_revoked() or record.is_expired():
                return None
            if record.resource and self.url not in record.resource:
                return None  # RFC 8707: issued for another resource
            return record
        return None

    def _challenge(self, status: int, error: str | None) -> HttpResponse:
        params: list[str] = []
        if error is not None:
            params.append(f'error="{error}"')
        if self._challenge_scope and self._required:
            params.append(f'scope="{" ".join(self._required)}"')
        if self._advertise:
            params.append(f'resource_metadata="{self.metadata_url}"')
        challenge = "Bearer" + (" " + ", ".join(params) if params else "")
        response = _json(status, {"error": error or "unauthorized"})
        response.headers.append(("WWW-Authenticate", challenge))
        return response


def _json(status: int, body: dict[str, Any]) -> HttpResponse:
    return HttpResponse(
        status,
        json.dumps(body).encode(),
        [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
    )
