"""sync.get_token() with a valid stored token: no event loop, and the async call's answers.

A stored token still valid for the asked client and scope is read on the calling thread from
the library's own stores; everything else (a refresh, a login, a store of the caller's own,
an option only the async call understands) goes through the event loop thread. Either way the
caller gets what ``await get_token(...)`` gives: the same Token, the same errors.
"""

from __future__ import annotations

import dataclasses
import functools
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import oauth_loopback as ol
from oauth_loopback import sync
from oauth_loopback._login._dpop import DPoPKey
from oauth_loopback._store import LoginKey, StoredLogin, StoredTokens

from ..store._helpers import DictKeyring

ISSUER = "https://as.example"
# What a process that only reads a stored token must not import: each is an event loop, or
# something only a refresh or a login needs.
EVENT_LOOP_STACK = ("anyio", "asyncio", "h11", "authlib", "httpx2", "trio", "sniffio")


def _login(
    *,
    expires_in: float = 3600,
    scope: str | None = "read write",
    client_id: str | None = None,
    dpop: bool = False,
) -> StoredLogin:
    client = (
        None
        if client_id is None
        else ol.ClientRegistration(
            issuer=ISSUER,
            client_id=client_id,
            obtained="preregistered",
            redirect_uris=("http://127.0.0.1/callback",),
        )
    )
    return StoredLogin(
        issuer=ISSUER,
        client=client,
        tokens=StoredTokens(
            access_token="stored-access",
            token_type="DPoP" if dpop else "Bearer",
            expires_at=time.time() + expires_in,
            refresh_token="stored-refresh",
            scope=scope,
            extra={"custom": "kept"},
        ),
        dpop_key=DPoPKey.generate().private_jwk() if dpop else None,
    )


def _memory_store(login: StoredLogin) -> ol.MemoryTokenStore:
    store = ol.MemoryTokenStore()
    anyio.run(store.save, login)
    return store


@pytest.fixture
def file_store(tmp_path: Path) -> Callable[[StoredLogin], ol.FileTokenStore]:
    def make(login: StoredLogin) -> ol.FileTokenStore:
        store = ol.FileTokenStore(tmp_path / "logins")
        anyio.run(store.save, login)
        return store

    return make


def _async_get_token(issuer: str, **options: Any) -> ol.Token:
    return anyio.run(functools.partial(ol.get_token, issuer, **options))


def _same(a: ol.Token, b: ol.Token) -> None:
    """The same Token: fields (expires_in within the second it took), client and DPoP key."""
    fields_a, fields_b = dict(a), dict(b)
    assert abs(int(fields_a.pop("expires_in")) - int(fields_b.pop("expires_in"))) <= 1  # type: ignore[call-overload]
    assert fields_a == fields_b
    assert a.client == b.client
    assert (a.dpop_key is None) == (b.dpop_key is None)
    if a.dpop_key is not None and b.dpop_key is not None:
        assert a.dpop_key.private_jwk() == b.dpop_key.private_jwk()


def _no_loop_thread(call: Callable[[], ol.Token]) -> ol.Token:
    """Run ``call`` and check that it started no thread (the portal's event loop thread)."""
    started: list[threading.Thread] = []
    original = threading.Thread.start

    def spy(self: threading.Thread) -> None:
        started.append(self)
        original(self)

    threading.Thread.start = spy  # type: ignore[method-assign]
    try:
        token = call()
    finally:
        threading.Thread.start = original  # type: ignore[method-assign]
    assert started == [], "an event loop thread was started for a valid stored token"
    return token


@pytest.mark.parametrize("kind", ["file", "memory", "keyring"])
@pytest.mark.parametrize("dpop", [False, True], ids=["bearer", "dpop"])
def test_valid_stored_token_is_the_async_calls_token_without_a_loop(
    kind: str, dpop: bool, file_store: Callable[[StoredLogin], ol.FileTokenStore], tmp_path: Path
) -> None:
    """The same Token as `await get_token()`, DPoP key included, and no event loop thread."""
    login = _login(client_id="app", dpop=dpop)
    store: ol.TokenStore
    if kind == "file":
        store = file_store(login)
    elif kind == "memory":
        store = _memory_store(login)
    else:
        store = ol.KeyringTokenStore(backend=DictKeyring(), lock_path=tmp_path / "locks")
        anyio.run(store.save, login)
    options: dict[str, Any] = {"store": store, "client_id": "app", "scope": "read"}
    token = _no_loop_thread(lambda: sync.get_token(ISSUER, **options))
    assert token.access_token == "stored-access"
    assert token["custom"] == "kept"
    assert token.client is not None
    assert token.client.client_id == "app"
    assert 3590 <= token.expires_in <= 3600  # type: ignore[operator]
    _same(token, _async_get_token(ISSUER, **options))


def test_login_only_options_are_ignored_as_by_the_async_call(
    file_store: Callable[[StoredLogin], ol.FileTokenStore],
) -> None:
    """Options used only by a login (config, timeout, open_browser...) change nothing here."""
    store = file_store(_login())

    def never(url: str) -> bool:
        raise AssertionError("no browser for a valid stored token")

    token = _no_loop_thread(
        lambda: sync.get_token(
            ISSUER,
            store=store,
            config=ol.CallbackConfig(),
            timeout=5,
            open_browser=never,
            paste=True,
            metadata={"issuer": ISSUER},
        )
    )
    assert token.access_token == "stored-access"


@pytest.mark.parametrize(
    ("login", "options"),
    [
        pytest.param(_login(expires_in=30), {}, id="inside-the-expiry-margin"),
        pytest.param(_login(), {"scope": "admin"}, id="scope-not-granted"),
        pytest.param(_login(client_id="app"), {"client_id": "other"}, id="another-client"),
        pytest.param(_login(), {"resource": "https://api.example"}, id="another-resource"),
    ],
)
def test_unusable_stored_token_goes_to_the_event_loop(
    login: StoredLogin, options: dict[str, Any]
) -> None:
    """A token the async call would not return is not returned: the event loop thread takes
    over to log in (here against metadata without an authorization endpoint, so the login's
    own error is what the caller gets, at once)."""
    store = _memory_store(login)
    call: dict[str, Any] = {"store": store, "metadata": {"issuer": ISSUER}, **options}
    with pytest.raises(ol.OAuthLoopbackError) as from_async:
        _async_get_token(ISSUER, **call)
    with pytest.raises(ol.OAuthLoopbackError) as from_sync:
        sync.get_token(ISSUER, **call)
    assert type(from_sync.value) is type(from_async.value)
    assert "authorization_endpoint" in str(from_sync.value)


class _OwnStore(ol.MemoryTokenStore):
    """A store of the caller's own: its async load is what must be called."""

    def __init__(self) -> None:
        super().__init__()
        self.loads = 0

    async def load(self, key: LoginKey) -> StoredLogin | None:
        self.loads += 1
        return await super().load(key)


def test_a_store_of_the_callers_own_is_read_through_its_async_load() -> None:
    """A subclass (or any TokenStore) may override load(): it is awaited, on the loop thread."""
    store = _OwnStore()
    anyio.run(store.save, _login())
    assert sync.get_token(ISSUER, store=store).access_token == "stored-access"
    assert store.loads == 1


_BAD_CALLS = [
    pytest.param({"store": {}}, TypeError, "FileTokenStore", id="not-a-store"),
    pytest.param({"client_secret": "s"}, ValueError, "needs the client_id", id="secret-alone"),
    pytest.param({"client_id": ""}, ValueError, "non-empty string", id="empty-client-id"),
    pytest.param({"scope": ["read"]}, TypeError, "one string", id="scope-list"),
    pytest.param({"method": "carrier-pigeon"}, ValueError, "'browser' or 'device'", id="method"),
    pytest.param({"method": "device"}, TypeError, "show_code=", id="device-without-show-code"),
    pytest.param({"no_such_option": 1}, TypeError, "no_such_option", id="unknown-option"),
]


@pytest.mark.parametrize(("options", "error", "match"), _BAD_CALLS)
def test_bad_arguments_raise_what_the_async_call_raises(
    options: dict[str, Any], error: type[Exception], match: str
) -> None:
    """Each mistake is refused with the async call's error, though a valid token is stored."""
    store = _memory_store(_login())
    call: dict[str, Any] = {"store": store, **options}
    with pytest.raises(error, match=match) as from_async:
        _async_get_token(ISSUER, **call)
    with pytest.raises(error, match=match) as from_sync:
        sync.get_token(ISSUER, **call)
    assert str(from_sync.value) == str(from_async.value)


def test_bad_issuer_and_backend_are_refused() -> None:
    """An empty issuer and an unknown backend are refused before the store is read."""
    store = _memory_store(_login())
    with pytest.raises(TypeError, match="issuer must be"):
        sync.get_token("", store=store)
    with pytest.raises(ValueError, match="'asyncio' or 'trio'"):
        sync.get_token(ISSUER, store=store, backend="curio")  # type: ignore[arg-type]


@pytest.mark.anyio
async def test_refused_on_an_event_loop_thread_even_with_a_valid_token() -> None:
    """The blocking call is refused on a loop's thread whatever the store holds: no surprise
    freeze the day the token needs a refresh."""
    store = ol.MemoryTokenStore()
    await store.save(_login())
    with pytest.raises(RuntimeError, match=r"await oauth_loopback\.get_token"):
        sync.get_token(ISSUER, store=store)


def test_file_store_errors_are_the_async_calls(tmp_path: Path) -> None:
    """An untrusted store (group-readable directory) is refused with the same TokenStoreError."""
    directory = tmp_path / "logins"
    store = ol.FileTokenStore(directory)
    anyio.run(store.save, _login())
    directory.chmod(0o750)
    with pytest.raises(ol.TokenStoreError) as from_async:
        _async_get_token(ISSUER, store=store)
    with pytest.raises(ol.TokenStoreError) as from_sync:
        sync.get_token(ISSUER, store=store)
    assert str(from_sync.value) == str(from_async.value)
    assert "chmod 700" in str(from_sync.value)


def test_a_process_reading_a_stored_token_imports_no_event_loop(tmp_path: Path) -> None:
    """`sync.get_token()` with a valid token in a FileTokenStore imports none of anyio,
    asyncio, h11, authlib, httpx2, trio (nor logging): one file read on this thread."""
    store = ol.FileTokenStore(tmp_path / "logins")
    anyio.run(store.save, dataclasses.replace(_login(), dpop_key=None))
    probe = textwrap.dedent(
        f"""
        import sys
        import oauth_loopback as ol
        import oauth_loopback.sync
        token = oauth_loopback.sync.get_token(
            {ISSUER!r}, store=ol.FileTokenStore({str(store.path)!r}), scope="read"
        )
        loaded = {{m.partition(".")[0] for m in sys.modules}}
        print(token.access_token, sorted(loaded & {set(EVENT_LOOP_STACK) | {"logging"}!r}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["stored-access", "[]"]
