"""A restarted MCP client stays logged in: the REAL SDK client against the SDK's own server.

Each test logs in once, then "restarts": a new receiver (on the same port, or on a new one
because the old one is taken), a new ``OAuthClientProvider`` and the same storage. The
servers match redirect URIs exactly (the SDK's stock ``exact`` mode, and FastMCP's own
in-memory authorization server) unless said otherwise, so a registration made for another
port cannot start a browser login there.
"Expired" means expired on both sides: the server's access tokens stop working
(``/test/expire-access-tokens``) and the stored token's ``expires_at`` is in the past.
"""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from urllib.parse import parse_qs, urlsplit

import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.client.auth.utils import issuers_match
from mcp.shared.auth import OAuthClientInformationFull
from pydantic import AnyUrl

from oauth_loopback.mcp import ExpiringToken, LoopbackOAuth, loopback_oauth
from tests.mcp_adapter._harness import (
    SDK_WARNINGS,
    Browser,
    MemoryStorage,
    call_whoami,
    expire_access_tokens,
    first_run,
    registered,
    revoke,
    sdk_provider,
    server_stats,
)
from tests.mcp_adapter._sdk_server import PORTLESS, PRE_CLIENT_ID

pytestmark = [pytest.mark.anyio, *SDK_WARNINGS]

#: A client ID metadata document URL (the cimd test server resolves it without fetching).
CIMD_URL = "https://client.example/oauth-loopback-tests.json"


@contextmanager
def port_taken(port: int) -> Iterator[None]:
    """Hold ``port`` so the next receiver cannot rebind it (a restart on a new port)."""
    with socket.socket() as blocker:
        blocker.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            blocker.bind(("127.0.0.1", port))
            blocker.listen(1)
        except OSError as exc:  # another process's socket took it meanwhile: busy all the same
            if exc.errno != errno.EADDRINUSE:
                raise
        yield


def expire_stored_token(storage: MemoryStorage) -> None:
    """The stored token's hour has passed, as the server's has."""
    assert isinstance(storage.tokens, ExpiringToken), "the wrapper stores the expiry"
    assert storage.tokens.expires_at is not None
    storage.tokens = storage.tokens.model_copy(update={"expires_at": time.time() - 5})


def make_provider(
    wiring: str, cb: LoopbackOAuth, server_url: str, storage: MemoryStorage
) -> OAuthClientProvider:
    """The docs' two wirings: OAuthClientProvider built by hand, or cb.client_provider()."""
    if wiring == "explicit":
        return sdk_provider(cb, server_url, storage)
    return cb.client_provider(
        server_url, storage, cb.client_metadata(client_name="oauth-loopback tests")
    )


async def restart(
    server_url: str, storage: MemoryStorage, old_port: int, *, new_port: bool, wiring: str
) -> tuple[str, Browser]:
    """Run again with ``storage``, on ``old_port`` or (it being taken) on another port."""
    browser = Browser()
    with port_taken(old_port) if new_port else nullcontext():
        async with loopback_oauth(open_browser=browser, prefer_port_from=storage) as cb:
            assert (cb.port != old_port) if new_port else (cb.port == old_port)
            provider = make_provider(wiring, cb, server_url, storage)
            assert (await call_whoami(server_url, provider)).startswith("hello from ")
            return cb.redirect_uri, browser


#: Servers that match redirect URIs exactly: the MCP Python SDK's own, and FastMCP's.
EXACT_SERVERS = [pytest.param("exact", id="sdk"), pytest.param("fastmcp", id="fastmcp")]
PORTS = [
    pytest.param(False, id="same-port"),
    pytest.param(True, id="new-port"),
]
WIRINGS = [
    pytest.param("explicit", id="explicit"),
    pytest.param("client_provider", id="client_provider"),
]


@pytest.mark.parametrize("wiring", WIRINGS)
@pytest.mark.parametrize("new_port", PORTS)
@pytest.mark.parametrize("server", EXACT_SERVERS)
async def test_restart_with_an_expired_token_refreshes_without_a_browser(
    servers: dict[str, str],
    caplog: pytest.LogCaptureFixture,
    server: str,
    new_port: bool,
    wiring: str,
) -> None:
    """Restart with an expired access token: the SDK refreshes it (same or new port), no browser, no registration."""
    url = servers[server]
    storage = MemoryStorage()
    old_uri, old_port = await first_run(url, storage)
    assert storage.client_info is not None
    client_id = storage.client_info.client_id
    await expire_access_tokens(url)
    expire_stored_token(storage)
    before = await server_stats(url)
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        await restart(url, storage, old_port, new_port=new_port, wiring=wiring)
    after = await server_stats(url)
    assert after["refreshes"][client_id] == before["refreshes"].get(client_id, 0) + 1
    assert after["registrations"] == before["registrations"]
    assert after["authorizations"][client_id] == 1  # the first run's, nothing since
    assert storage.registrations == 1
    assert storage.client_info.client_id == client_id
    assert registered(storage) == [old_uri]  # untouched: no browser login needed it
    assert isinstance(storage.tokens, ExpiringToken)
    assert storage.tokens.expires_at is not None
    assert storage.tokens.expires_at > time.time() + 3000  # the refreshed token, an hour
    assert "the client refreshes it before its first request" in caplog.text
    if new_port:
        assert "it still refreshes tokens" in caplog.text


async def test_restart_with_a_valid_token_sends_it(servers: dict[str, str]) -> None:
    """Restart on a new port with a token still valid: it is sent as is, no refresh, no browser."""
    url = servers["exact"]
    storage = MemoryStorage()
    _, old_port = await first_run(url, storage)
    assert storage.client_info is not None
    client_id = storage.client_info.client_id
    tokens = storage.tokens
    _, browser = await restart(url, storage, old_port, new_port=True, wiring="explicit")
    assert browser.visited == []
    assert client_id not in (await server_stats(url))["refreshes"]
    assert storage.tokens is tokens


@pytest.mark.parametrize("bad_refresh", ["revoked", "garbage"])
@pytest.mark.parametrize("new_port", PORTS)
@pytest.mark.parametrize("server", EXACT_SERVERS)
async def test_unusable_refresh_token_logs_in_once(
    servers: dict[str, str], server: str, new_port: bool, bad_refresh: str
) -> None:
    """Refresh token revoked or invalid: exactly one browser login; on a new port with a new registration."""
    url = servers[server]
    storage = MemoryStorage()
    old_uri, old_port = await first_run(url, storage)
    assert storage.client_info is not None
    assert storage.tokens is not None
    old_id = storage.client_info.client_id
    assert storage.tokens.refresh_token is not None
    if bad_refresh == "revoked":
        await revoke(url, storage.tokens.refresh_token, old_id)  # RFC 7009
    else:
        storage.tokens = storage.tokens.model_copy(update={"refresh_token": "not-a-token"})
    await expire_access_tokens(url)
    expire_stored_token(storage)
    uri, browser = await restart(url, storage, old_port, new_port=new_port, wiring="explicit")
    assert len(browser.visited) == 1
    query = parse_qs(urlsplit(browser.visited[0]).query)
    assert query["redirect_uri"] == [uri]
    assert storage.client_info is not None
    if new_port:
        # The stale registration was replaced, once the browser login started.
        assert storage.registrations == 2
        assert storage.client_info.client_id != old_id
        assert registered(storage) == [uri]
    else:
        assert storage.registrations == 1
        assert storage.client_info.client_id == old_id
        assert registered(storage) == [old_uri]
    assert query["client_id"] == [storage.client_info.client_id]
    assert storage.client_info.issuer is not None  # the SDK's SEP-2352 binding, never the marker
    assert issuers_match(storage.client_info.issuer, url.removesuffix("/mcp"))


@pytest.mark.parametrize(
    "uris",
    [pytest.param([PORTLESS], id="portless-uri"), pytest.param([], id="no-uris")],
)
async def test_preregistered_client_logs_in_without_a_registration_endpoint(
    servers: dict[str, str], uris: list[str]
) -> None:
    """A hand-registered client (portless URI, or none listed) logs in where nothing can register, and then refreshes."""
    url = servers["preregistered"]
    storage = MemoryStorage()
    storage.client_info = OAuthClientInformationFull(
        client_id=PRE_CLIENT_ID,
        redirect_uris=[AnyUrl(uri) for uri in uris] or None,
        token_endpoint_auth_method="none",
        application_type="native",
    )
    browser = Browser()
    async with loopback_oauth(open_browser=browser) as cb:
        text = await call_whoami(url, sdk_provider(cb, url, storage))
        first_uri = cb.redirect_uri
    assert text == "hello from preregistered"
    assert len(browser.visited) == 1
    query = parse_qs(urlsplit(browser.visited[0]).query)
    assert query["client_id"] == [PRE_CLIENT_ID]
    assert query["redirect_uri"] == [first_uri]
    assert storage.registrations == 0
    # Next run, elsewhere, with the token expired: a refresh with the same client.
    await expire_access_tokens(url)
    expire_stored_token(storage)
    again = Browser()
    with port_taken(urlsplit(first_uri).port or 0):
        async with loopback_oauth(open_browser=again) as cb:
            assert await call_whoami(url, sdk_provider(cb, url, storage)) == text
    assert again.visited == []
    assert storage.registrations == 0
    assert (await server_stats(url))["refreshes"][PRE_CLIENT_ID] >= 1


async def test_preregistered_client_for_another_port_is_never_replaced(
    servers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A hand registration naming another port is used as it is (nothing is registered) and the mismatch is logged."""
    url = servers["preregistered"]
    storage = MemoryStorage()
    storage.client_info = OAuthClientInformationFull(
        client_id=PRE_CLIENT_ID,
        redirect_uris=[AnyUrl("http://127.0.0.1:1/callback")],
        token_endpoint_auth_method="none",
        application_type="native",
    )
    browser = Browser()
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        async with loopback_oauth(open_browser=browser) as cb:
            provider = cb.client_provider(url, storage)
            assert await call_whoami(url, provider) == "hello from preregistered"
    assert storage.registrations == 0
    assert storage.client_info.client_id == PRE_CLIENT_ID
    assert "it is a pre-registered client and cannot be replaced" in caplog.text
    assert "whose registration does not list the redirect URI" in caplog.text


async def test_metadata_document_client_logs_in_on_two_ports_without_registering(
    servers: dict[str, str],
) -> None:
    """With the SDK's client_metadata_url, logins on two different ports register nothing and send the live URI."""
    url = servers["cimd"]
    storage = MemoryStorage()
    before = await server_stats(url)
    seen: list[str] = []
    for _ in range(2):
        storage.tokens = None  # each run needs a browser login
        browser = Browser()
        taken = urlsplit(seen[-1]).port if seen else None
        with port_taken(taken) if taken else nullcontext():
            async with loopback_oauth(open_browser=browser) as cb:
                provider = cb.client_provider(url, storage, client_metadata_url=CIMD_URL)
                assert await call_whoami(url, provider) == "hello from cimd"
                seen.append(cb.redirect_uri)
        query = parse_qs(urlsplit(browser.visited[0]).query)
        assert query["client_id"] == [CIMD_URL]
        assert query["redirect_uri"] == [seen[-1]]
    assert seen[0] != seen[1]
    after = await server_stats(url)
    assert after["registrations"] == before["registrations"]
    assert after["authorizations"][CIMD_URL] == before["authorizations"].get(CIMD_URL, 0) + 2
    assert storage.client_info is not None
    assert storage.client_info.client_id == CIMD_URL
