"""Forwarded redirect URIs: the server is given the forwarded address, the receiver still
listens on loopback only, and accepts that address's Host (and only in that mode)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer, follow_redirects
from tests import _http

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def relay(target: int) -> AsyncIterator[int]:
    """A TCP port forward on 127.0.0.1 (like ssh -L): bytes both ways, Host untouched."""

    async def pipe(a: SocketStream, b: SocketStream) -> None:
        try:
            async for chunk in a:
                await b.send(chunk)
            await b.send_eof()
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            pass

    async def handle(client: SocketStream) -> None:
        async with client, await anyio.connect_tcp("127.0.0.1", target) as upstream:
            async with anyio.create_task_group() as tg:
                tg.start_soon(pipe, client, upstream)
                tg.start_soon(pipe, upstream, client)

    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    async with listener, anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, handle)
        yield listener.extra(anyio.abc.SocketAttribute.local_port)  # noqa: S610  (anyio's)
        tg.cancel_scope.cancel()


def test_config_checks_the_public_uri() -> None:
    """https or loopback http only; the receiver serves its path; {port} is a template."""
    config = ol.CallbackConfig(public_redirect_uri="https://{port}-box.example.dev/oauth/cb")
    assert config.path == "/oauth/cb"
    assert config.host == "127.0.0.1"
    for bad in (
        "http://box.example/cb",
        "https://box.example/cb?x=1",
        "https://u@box.example/cb",
        "",
    ):
        with pytest.raises(ol.InvalidCallbackConfig):
            ol.CallbackConfig(public_redirect_uri=bad)
    with pytest.raises(ol.InvalidCallbackConfig, match="path"):
        ol.CallbackConfig(public_redirect_uri="https://box.example/cb", path="/other")
    mapped = ol.CallbackConfig.from_mapping({"publicRedirectUri": "https://b.example:{port}/cb"})
    assert mapped.public_redirect_uri == "https://b.example:{port}/cb"


async def test_the_redirect_uri_is_the_public_one_with_the_bound_port() -> None:
    """{port} is filled from the port the OS assigned; the socket is still on 127.0.0.1."""
    config = ol.CallbackConfig(public_redirect_uri="https://{port}-box.example.dev/callback")
    async with ol.open_receiver(config) as receiver:
        assert receiver.redirect_uri == f"https://{receiver.port}-box.example.dev/callback"
        pending = receiver.expect()
        forwarded = await _http.get(
            receiver.port,
            f"/callback?code=c1&state={pending.state}",
            host_header=f"{receiver.port}-box.example.dev",
        )
        assert forwarded.status == 200
        assert (await pending.wait(5)).code == "c1"
        other = receiver.expect()
        foreign = await _http.get(
            receiver.port, f"/callback?code=c2&state={other.state}", host_header="evil.example"
        )
        assert foreign.status == 421
        assert not other.done


async def test_without_forwarding_the_public_host_is_refused() -> None:
    """The forwarded host is accepted only in forwarded mode (the DNS-rebinding guard stays)."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        reply = await _http.get(
            receiver.port, f"/callback?code=c&state={pending.state}", host_header="box.example.dev"
        )
        assert reply.status == 421


async def test_a_login_through_a_port_forward_end_to_end() -> None:
    """authorize() registers and redirects to the forwarded address; the browser goes through
    the forward (Host: the forward's address) and the login completes."""
    async with AuthorizationServer() as server:

        async def open_browser(url: str) -> str:
            return await follow_redirects(url)

        # The forward must point at the receiver, whose port is known only once bound: bind a
        # receiver with a fixed free port first.
        async with ol.open_receiver() as probe:
            free = probe.port
        async with relay(free) as forward_port:
            config = ol.CallbackConfig(
                port=free, public_redirect_uri=f"http://127.0.0.1:{forward_port}/callback"
            )
            token = await ol.authorize(server.issuer, config=config, open_browser=open_browser)
        (client,) = server.clients.values()
    assert token.access_token
    assert client.redirect_uris == (f"http://127.0.0.1:{forward_port}/callback",)
