"""get_token(): stored -> refreshed -> logged in, against the embedded server, with real files.

Every "run" of a CLI is a fresh ``FileTokenStore`` object on the same directory, so what one
run leaves on disk is all the next one has. The browser is a counting stand-in: the number the
issue is about is how often it opens.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import stat
import sys
from pathlib import Path

import anyio
import pytest

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer
from tests.login._support import (
    Browser,
    count,
    drop_tokens,
    dynamic_clients,
    expire,
    free_port,
    grants,
    no_browser,
)

pytestmark = pytest.mark.anyio


def _json_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.json"))


def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _damage(path: Path) -> None:
    """Cut the file short, as a full disk or an editor might."""
    path.write_bytes(b'{"format": "oauth-loopback/login", "version": 1, "issuer": ')


def _modes(directory: Path) -> dict[str, int]:
    """The permission bits of ``directory`` (as ".") and of every file in it."""
    modes = {".": stat.S_IMODE(directory.stat().st_mode)}
    modes.update({p.name: stat.S_IMODE(p.stat().st_mode) for p in directory.iterdir()})
    return modes


async def _stored(path: Path, issuer: str) -> ol.StoredLogin:
    login = await ol.FileTokenStore(path).load(ol.LoginKey(issuer))
    assert login is not None
    return login


async def test_first_call_logs_in_and_the_next_run_sends_nothing(tmp_path: Path) -> None:
    """A second run with a valid stored token returns it without a request or a browser."""
    async with AuthorizationServer() as server:
        browser = Browser()
        first = await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=browser
        )
        assert browser.count == 1
        assert first.access_token == server.issued_tokens[-1].access_token
        assert first.client is not None
        assert first.client.obtained == "dynamic"
        requests = len(server.requests)
        again = await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=no_browser
        )
        assert again.access_token == first.access_token
        assert again.client == first.client
        assert len(server.requests) == requests
        login = await _stored(tmp_path, server.issuer)
        assert login.client is not None
        assert login.client.client_id in server.clients
        assert login.metadata is not None
        assert login.metadata.document["issuer"] == server.issuer


@pytest.mark.parametrize("exact", [False, True], ids=["any-port-server", "exact-match-server"])
@pytest.mark.parametrize("port", ["same-port", "new-port"])
async def test_restart_with_an_expired_token_refreshes_without_a_browser(
    tmp_path: Path, exact: bool, port: str
) -> None:
    """A restart on the same or another port refreshes: 0 browser opens, 0 registrations."""
    fixed = free_port()
    async with AuthorizationServer(exact_redirect_match=exact) as server:
        browser = Browser()
        await ol.get_token(
            server.issuer,
            store=ol.FileTokenStore(tmp_path),
            config=ol.CallbackConfig(port=fixed),
            open_browser=browser,
        )
        assert browser.count == 1
        await expire(ol.FileTokenStore(tmp_path), ol.LoginKey(server.issuer))
        rerun = ol.CallbackConfig(port=fixed) if port == "same-port" else ol.CallbackConfig()
        token = await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), config=rerun, open_browser=no_browser
        )
        assert grants(server) == ["authorization_code", "refresh_token"]
        assert token.access_token == server.issued_tokens[-1].access_token
        assert count(server, "GET", "/authorize") == 1  # the first login only
        assert len(dynamic_clients(server)) == 1
        # The rotated refresh token was saved; the spent one is never used again.
        login = await _stored(tmp_path, server.issuer)
        assert login.tokens is not None
        assert login.tokens.refresh_token == server.issued_tokens[-1].refresh_token
        assert server.issued_tokens[0].rotated


@pytest.mark.parametrize(
    ("exact", "replaced"),
    [(False, False), (True, True)],
    ids=["any-port-server-keeps-it", "exact-match-server-replaces-it"],
)
async def test_revoked_refresh_token_costs_exactly_one_login(
    tmp_path: Path, exact: bool, replaced: bool
) -> None:
    """With the refresh token revoked, one browser login; the registration is replaced only
    when the server refuses it for the new port."""
    async with AuthorizationServer(exact_redirect_match=exact) as server:
        await ol.get_token(server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=Browser())
        before = await _stored(tmp_path, server.issuer)
        assert before.client is not None
        assert before.tokens is not None
        assert before.tokens.refresh_token is not None
        assert server.revoke_token(before.tokens.refresh_token)
        await expire(ol.FileTokenStore(tmp_path), ol.LoginKey(server.issuer))
        browser = Browser()
        token = await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=browser
        )
        assert browser.count == 1
        after = await _stored(tmp_path, server.issuer)
        assert after.client is not None
        assert after.tokens is not None
        assert token.access_token == after.tokens.access_token
        assert token.access_token == server.issued_tokens[-1].access_token
        assert grants(server) == ["authorization_code", "authorization_code"]
        assert (after.client.client_id != before.client.client_id) is replaced
        assert len(dynamic_clients(server)) == (2 if replaced else 1)


async def test_exact_match_server_on_the_same_port_keeps_the_registration(
    tmp_path: Path,
) -> None:
    """A registration that lists this very redirect URI is used as it is, without asking."""
    fixed = free_port()
    config = ol.CallbackConfig(port=fixed)
    async with AuthorizationServer(exact_redirect_match=True) as server:
        await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), config=config, open_browser=Browser()
        )
        await drop_tokens(ol.FileTokenStore(tmp_path), ol.LoginKey(server.issuer))
        browser = Browser()
        await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), config=config, open_browser=browser
        )
        assert browser.count == 1
        assert len(dynamic_clients(server)) == 1
        # Two logins, and one stale-client preflight before the second one opens the browser.
        assert count(server, "GET", "/authorize") == 3


async def test_25_logins_on_25_ports_register_once(tmp_path: Path) -> None:
    """25 interactive logins, each on a new port, make one registration: a server that
    allows 20 an hour (the TypeScript MCP SDK's) never locks the user out."""
    async with AuthorizationServer(registration_limit=20) as server:
        browser = Browser()
        key = ol.LoginKey(server.issuer)
        ports = set()
        for _ in range(25):
            token = await ol.get_token(
                server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=browser
            )
            ports.add(browser.opened[-1])
            assert token.client is not None
            await drop_tokens(ol.FileTokenStore(tmp_path), key)
        assert browser.count == 25
        assert len(dynamic_clients(server)) == 1
        assert server.registrations_refused == 0
        assert grants(server) == ["authorization_code"] * 25


async def test_registering_on_every_login_hits_the_limit_with_a_message_that_says_why() -> None:
    """Without reuse the 21st registration gets 429, and the error names the cure."""
    async with AuthorizationServer(registration_limit=20) as server:
        for _ in range(20):
            await ol.authorize(server.issuer, open_browser=Browser())
        with pytest.raises(ol.RegistrationError) as caught:
            await ol.authorize(server.issuer, open_browser=no_browser)
        assert caught.value.status_code == 429
        assert "get_token(store=" in str(caught.value)
        assert server.registrations_refused == 1


async def test_25_concurrent_calls_share_one_login(tmp_path: Path) -> None:
    """25 concurrent get_token() calls on an empty store: one registration, one browser."""
    async with AuthorizationServer() as server:
        browser = Browser()
        tokens: list[ol.Token] = []

        async def one() -> None:
            tokens.append(
                await ol.get_token(
                    server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=browser
                )
            )

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                for _ in range(25):
                    tg.start_soon(one)
        assert browser.count == 1
        assert len(dynamic_clients(server)) == 1
        assert {t.access_token for t in tokens} == {server.issued_tokens[0].access_token}


async def test_a_wider_scope_logs_in_again_with_the_same_registration(tmp_path: Path) -> None:
    """A stored token lacking a requested scope is not used (a refresh cannot widen it)."""
    async with AuthorizationServer(scopes_supported=["read", "write"]) as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, scope="read", open_browser=Browser())
        same = await ol.get_token(server.issuer, store=store, scope="read", open_browser=no_browser)
        assert same.scope == "read"
        browser = Browser()
        wider = await ol.get_token(
            server.issuer, store=store, scope="read write", open_browser=browser
        )
        assert browser.count == 1
        assert set((wider.scope or "").split()) == {"read", "write"}
        assert len(dynamic_clients(server)) == 1


async def test_stored_tokens_of_another_client_are_not_used(tmp_path: Path) -> None:
    """Passing client_id= of another client ignores the stored login and logs in as it."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(server.issuer, store=store, open_browser=Browser())
        mine = server.register_client(["http://127.0.0.1/callback"])
        browser = Browser()
        token = await ol.get_token(server.issuer, store=store, client_id=mine, open_browser=browser)
        assert browser.count == 1
        assert token.client is not None
        assert token.client.client_id == mine
        assert token.client.obtained == "preregistered"
        assert server.issued_tokens[-1].client_id == mine
        again = await ol.get_token(
            server.issuer, store=store, client_id=mine, open_browser=no_browser
        )
        assert again.access_token == token.access_token


async def test_a_confidential_preregistered_client_refreshes_with_its_secret(
    tmp_path: Path,
) -> None:
    """client_secret= is kept in the (0600) store and sent again on the refresh."""
    async with AuthorizationServer() as server:
        client_id = server.register_client(
            ["http://127.0.0.1/callback"], token_endpoint_auth_method="client_secret_basic"
        )
        secret = server.clients[client_id].client_secret
        assert secret is not None
        store = ol.FileTokenStore(tmp_path)
        await ol.get_token(
            server.issuer,
            store=store,
            client_id=client_id,
            client_secret=secret,
            open_browser=Browser(),
        )
        await expire(store, ol.LoginKey(server.issuer))
        await ol.get_token(server.issuer, store=store, client_id=client_id, open_browser=no_browser)
        assert grants(server) == ["authorization_code", "refresh_token"]


async def test_unreachable_server_during_a_refresh_raises_and_opens_no_browser(
    tmp_path: Path,
) -> None:
    """A network failure is not a reason to log in again: ServerUnreachable, no browser."""
    async with AuthorizationServer() as server:
        issuer = server.issuer
        await ol.get_token(issuer, store=ol.FileTokenStore(tmp_path), open_browser=Browser())
    await expire(ol.FileTokenStore(tmp_path), ol.LoginKey(issuer))
    with pytest.raises(ol.ServerUnreachable, match="token endpoint"):
        await ol.get_token(issuer, store=ol.FileTokenStore(tmp_path), open_browser=no_browser)
    login = await _stored(tmp_path, issuer)
    assert login.tokens is not None
    assert login.tokens.refresh_token is not None


async def test_a_refused_registration_that_cannot_be_replaced_is_a_clear_error(
    tmp_path: Path,
) -> None:
    """An exact-match server without registration refuses the stored client on a new port:
    ClientRejected before any browser opens, naming the fix."""
    async with AuthorizationServer(exact_redirect_match=True, registration=False) as server:
        old_uri = f"http://127.0.0.1:{free_port()}/callback"
        client_id = server.register_client([old_uri])
        store = ol.FileTokenStore(tmp_path)
        await store.save(
            ol.StoredLogin(
                issuer=server.issuer,
                client=ol.ClientRegistration(
                    issuer=server.issuer,
                    client_id=client_id,
                    obtained="dynamic",
                    redirect_uris=(old_uri,),
                ),
            )
        )
        with pytest.raises(ol.ClientRejected) as caught:
            await ol.get_token(server.issuer, store=store, open_browser=no_browser)
        assert caught.value.client_id == client_id
        assert caught.value.redirect_uri != old_uri
        assert "CallbackConfig(port=" in str(caught.value)


async def test_corrupt_store_file_is_a_clear_error_and_left_alone(tmp_path: Path) -> None:
    """A damaged login file stops get_token() with the file and the fix; nothing is overwritten
    and no browser opens."""
    async with AuthorizationServer() as server:
        await ol.get_token(server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=Browser())
        (path,) = _json_files(tmp_path)
        _damage(path)
        with pytest.raises(ol.TokenStoreError) as caught:
            await ol.get_token(
                server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=no_browser
            )
        assert str(path) in str(caught.value)
        assert "log in again" in str(caught.value)
        assert _read(path).endswith('"issuer": ')


async def test_store_files_are_0600_and_no_secret_reaches_a_log_line_or_repr(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Every file the store writes is 0600 (its directory 0700); tokens, codes and the client
    secret never appear in a log record or a repr."""
    caplog.set_level(logging.DEBUG)
    async with AuthorizationServer() as server:
        client_id = server.register_client(
            ["http://127.0.0.1/callback"], token_endpoint_auth_method="client_secret_basic"
        )
        secret = server.clients[client_id].client_secret
        assert secret is not None
        store = ol.FileTokenStore(tmp_path)
        browser = Browser()
        token = await ol.get_token(
            server.issuer,
            store=store,
            client_id=client_id,
            client_secret=secret,
            open_browser=browser,
        )
        await expire(store, ol.LoginKey(server.issuer))
        refreshed = await ol.get_token(server.issuer, store=store, client_id=client_id)
        login = await store.load(ol.LoginKey(server.issuer))
        auth = ol.TokenAuth(server.issuer, store=store, client_id=client_id)
        secrets = {secret} | {t.access_token for t in server.issued_tokens}
        secrets |= {t.refresh_token for t in server.issued_tokens if t.refresh_token}
    assert len(secrets) == 5
    reprs = [repr(token), str(token), repr(refreshed), repr(login), str(login), repr(auth)]
    reprs += [repr(store), repr(token.client), repr(login and login.tokens)]
    # The embedded server's own authlib grants log what they issue (server side, in this
    # process); everything on the client side, ours and the libraries', is checked.
    client_side = [
        r
        for r in caplog.records
        if not r.name.startswith(("authlib.oauth2.rfc", "oauth_loopback.testing"))
    ]
    logged = "\n".join(r.getMessage() for r in client_side)
    assert "refreshed the access token" in logged  # the log did run
    for value in secrets:
        assert value not in logged
        assert all(value not in text for text in reprs)
    ours = "\n".join(r.getMessage() for r in client_side if r.name.startswith("oauth_loopback"))
    assert browser.opened
    for url in browser.opened:  # the authorization URL (its state) is never logged by us
        assert url not in ours
        assert url.split("state=")[1].split("&")[0] not in ours
    modes = _modes(tmp_path)
    assert modes.pop(".") == 0o700
    assert modes
    assert set(modes.values()) == {0o600}, modes
    (data,) = _json_files(tmp_path)
    assert secret in _read(data)  # kept, in the 0600 file only


async def test_a_valid_stored_token_needs_neither_authlib_nor_httpx2(tmp_path: Path) -> None:
    """get_token() with a valid stored token imports no authlib or httpx2 (fast CLI start)."""
    issuer = "https://as.example"
    await ol.FileTokenStore(tmp_path).save(
        ol.StoredLogin(
            issuer=issuer,
            tokens=ol.StoredTokens(access_token="stored-token", token_type="Bearer"),
        )
    )
    code = (
        "import functools, sys, anyio, oauth_loopback as ol\n"
        f"store = ol.FileTokenStore({str(tmp_path)!r})\n"
        f"token = anyio.run(functools.partial(ol.get_token, {issuer!r}, store=store))\n"
        "heavy = [m for m in ('authlib', 'httpx2') if m in sys.modules]\n"
        "print(token.access_token, heavy)\n"
    )
    result = await anyio.run_process(
        [sys.executable, "-c", code],
        check=False,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split() == ["stored-token", "[]"]


async def test_store_argument_is_checked() -> None:
    """A store= that is not a TokenStore is refused with the names of the real ones."""
    with pytest.raises(TypeError, match="FileTokenStore"):
        await ol.get_token("https://as.example", store={})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="client_secret= needs the client_id="):
        await ol.get_token("https://as.example", store=ol.MemoryTokenStore(), client_secret="s")


# --- authorize(client=...) without a store -------------------------------------------------


@pytest.mark.parametrize("exact", [False, True], ids=["any-port-server", "exact-match-server"])
async def test_authorize_reuses_token_client_on_a_new_port(exact: bool) -> None:
    """authorize(client=token.client) reuses the registration where the server accepts any
    port, and registers once more (reported in the new token.client) where it does not."""
    async with AuthorizationServer(exact_redirect_match=exact) as server:
        first = await ol.authorize(server.issuer, open_browser=Browser())
        assert first.client is not None
        assert first.client.redirect_uris
        assert first.client.issuer == server.issuer
        second = await ol.authorize(server.issuer, client=first.client, open_browser=Browser())
        assert second.client is not None
        assert (second.client.client_id != first.client.client_id) is exact
        assert len(dynamic_clients(server)) == (2 if exact else 1)


async def test_authorize_refuses_a_registration_of_another_issuer() -> None:
    """A registration is never used with another issuer, nor is something else taken as one."""
    other = ol.ClientRegistration(issuer="https://other.example", client_id="c", obtained="dynamic")
    with pytest.raises(ValueError, match="never used with another issuer"):
        await ol.authorize("https://as.example", client=other)
    with pytest.raises(TypeError, match="token.client"):
        await ol.authorize("https://as.example", client="c")  # type: ignore[arg-type]


async def test_a_stored_login_for_another_resource_is_another_login(tmp_path: Path) -> None:
    """Logins are keyed by issuer and resource: another resource logs in (same client store
    entry is not shared), and both stay usable."""
    async with AuthorizationServer() as server:
        store = ol.FileTokenStore(tmp_path)
        a = await ol.get_token(
            server.issuer, store=store, resource="https://a.example", open_browser=Browser()
        )
        b = await ol.get_token(
            server.issuer, store=store, resource="https://b.example", open_browser=Browser()
        )
        assert a.access_token != b.access_token
        assert [t.resource for t in server.issued_tokens] == [
            ("https://a.example",),
            ("https://b.example",),
        ]
        again = await ol.get_token(
            server.issuer, store=store, resource="https://a.example", open_browser=no_browser
        )
        assert again.access_token == a.access_token
        assert {json.loads(_read(p))["resource"] for p in _json_files(tmp_path)} == {
            "https://a.example",
            "https://b.example",
        }


def test_refresh_errors_say_refresh() -> None:
    """A refused refresh token reads as such, and survives pickling with its grant."""
    import pickle

    error = ol.TokenError("invalid_grant", "spent", status_code=400, grant_type="refresh_token")
    assert "refused the refresh token" in str(error)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301  (our own object)
    assert again.grant_type == "refresh_token"
    assert str(again) == str(error)
    assert dataclasses.is_dataclass(ol.StoredTokens)


async def test_import_oauth_loopback_loads_no_store_or_login_dependency() -> None:
    """`import oauth_loopback` loads none of authlib, httpx2, filelock, platformdirs, keyring;
    naming a store loads no login dependency either."""
    code = (
        "import sys, oauth_loopback as ol\n"
        "heavy = ('authlib', 'httpx2', 'filelock', 'platformdirs', 'keyring')\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "ol.MemoryTokenStore, ol.FileTokenStore, ol.StoredLogin, ol.get_token\n"
        "print([m for m in heavy if m in sys.modules])\n"
    )
    result = await anyio.run_process([sys.executable, "-c", code], check=False)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout.decode().split("\n")[:2] == ["[]", "[]"]
