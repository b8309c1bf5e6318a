"""Shared pieces of the staying-logged-in tests: a counting browser, a document host, helpers.

The browser stand-in counts how often it is opened (the number the issue is about: a restart
must open it 0 times) and plays the browser with :func:`follow_redirects` against the embedded
authorization server. The document host serves client ID metadata documents on 127.0.0.1
with the test server's own HTTP plumbing.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager

import anyio
from anyio.abc import SocketAttribute, SocketListener

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, follow_redirects
from oauth_loopback.testing._http import HttpRequest, HttpResponse, HttpServer, bind_loopback


class Browser:
    """``open_browser=`` that follows the login headlessly and counts every opening."""

    def __init__(self) -> None:
        self.opened: list[str] = []

    async def __call__(self, url: str) -> bool:
        self.opened.append(url)
        await follow_redirects(url)
        return True

    @property
    def count(self) -> int:
        return len(self.opened)


async def no_browser(url: str) -> bool:
    """An opener for calls that must not log in: opening it fails the test."""
    msg = "the browser was opened, but this call should have used the stored login"
    raise AssertionError(msg)


def free_port() -> int:
    """A port nothing listens on right now (for a fixed-port receiver)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def expire(store: ol.TokenStore, key: ol.LoginKey) -> ol.StoredLogin:
    """Make the stored access token expired, as it is when a CLI runs again an hour later."""
    login = await store.load(key)
    assert login is not None
    assert login.tokens is not None
    tokens = dataclasses.replace(login.tokens, expires_at=1.0)  # long past
    return await store.save(dataclasses.replace(login, tokens=tokens))


async def drop_tokens(store: ol.TokenStore, key: ol.LoginKey) -> ol.StoredLogin:
    """Keep the registration, forget the tokens: the next get_token() must log in."""
    login = await store.load(key)
    assert login is not None
    return await store.save(dataclasses.replace(login, tokens=None))


def grants(server: AuthorizationServer) -> list[str]:
    """The grant of every token response the server sent, oldest first."""
    return [t.grant_type for t in server.issued_tokens]


def dynamic_clients(server: AuthorizationServer) -> list[str]:
    return [c.client_id for c in server.clients.values() if c.dynamic]


def count(server: AuthorizationServer, method: str, suffix: str) -> int:
    """How many requests ``method <issuer path><suffix>`` the server handled."""
    return sum(1 for m, p in server.requests if m == method and p.endswith(suffix))


class DocumentHost:
    """Serves JSON documents (client ID metadata documents) on ``http://127.0.0.1:<port>``."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.documents: dict[str, bytes] = {}
        self.fetched: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def serve(self, path: str, document: Mapping[str, object] | bytes) -> str:
        body = document if isinstance(document, bytes) else json.dumps(dict(document)).encode()
        self.documents[path] = body
        return self.url(path)

    async def handle(self, request: HttpRequest) -> HttpResponse:
        await anyio.lowlevel.checkpoint()
        self.fetched.append(request.path)
        body = self.documents.get(request.path)
        if body is None or request.method != "GET":
            return HttpResponse(404, b"not found", [("Content-Type", "text/plain")])
        return HttpResponse(200, body, [("Content-Type", "application/json")])


@asynccontextmanager
async def document_host() -> AsyncIterator[DocumentHost]:
    listener = await SocketListener.from_socket(bind_loopback())
    host = DocumentHost(listener.extra(SocketAttribute.local_port))  # noqa: S610  (anyio's)
    http = HttpServer(host.handle)
    async with anyio.create_task_group() as tg:
        tg.start_soon(http.accept_loop, listener, tg)
        try:
            yield host
        finally:
            tg.cancel_scope.cancel()
