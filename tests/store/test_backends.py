"""What every store promises, run against the file, memory and keyring stores alike."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from oauth_loopback._store import (
    FileTokenStore,
    KeyringTokenStore,
    LoginKey,
    MemoryTokenStore,
    StoredLogin,
    StoredTokens,
    TokenStore,
)

from ._helpers import ISSUER, RESOURCE, SECRETS, DictKeyring, sample_login

pytestmark = pytest.mark.anyio

KEY = LoginKey(ISSUER, RESOURCE)


@pytest.fixture(params=["file", "memory", "keyring"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[TokenStore]:
    """Each store, fresh and empty, its files (if any) under tmp_path."""
    if request.param == "file":
        yield FileTokenStore(tmp_path / "logins")
    elif request.param == "memory":
        yield MemoryTokenStore()
    else:
        yield KeyringTokenStore(backend=DictKeyring(), lock_path=tmp_path / "locks")


async def test_every_store_implements_the_protocol(store: TokenStore) -> None:
    """Each store is a TokenStore (the protocol is runtime-checkable)."""
    assert isinstance(store, TokenStore)


async def test_save_then_load_round_trips(store: TokenStore) -> None:
    """What save() stored, load() gives back equal, with updated_at stamped."""
    before = time.time()
    saved = await store.save(sample_login())
    assert saved.updated_at is not None
    assert saved.updated_at >= before
    assert dataclasses.replace(saved, updated_at=None) == sample_login()
    assert await store.load(KEY) == saved


async def test_load_of_an_unknown_key_is_none(store: TokenStore) -> None:
    """A key nobody saved loads as None (the caller then logs in)."""
    assert await store.load(KEY) is None
    await store.save(sample_login())
    assert await store.load(LoginKey(ISSUER)) is None
    assert await store.load(LoginKey(ISSUER + "/", RESOURCE)) is None


async def test_save_replaces_the_previous_login(store: TokenStore) -> None:
    """A second save under the same key replaces the first."""
    await store.save(sample_login())
    await store.save(sample_login(access="ACCESS-2"))
    loaded = await store.load(KEY)
    assert loaded is not None
    assert loaded.tokens is not None
    assert loaded.tokens.access_token == "ACCESS-2"
    assert len(await store.logins()) == 1


async def test_delete_forgets_and_says_whether_there_was_one(store: TokenStore) -> None:
    """delete() removes the login and returns True, or False when there was nothing."""
    assert await store.delete(KEY) is False
    await store.save(sample_login())
    assert await store.delete(KEY) is True
    assert await store.load(KEY) is None
    assert await store.delete(KEY) is False
    assert await store.logins() == []


async def test_logins_lists_everything_sorted(store: TokenStore) -> None:
    """logins() lists every stored login, by issuer then resource (what `status` shows)."""
    await store.save(sample_login("https://b.example", None))
    await store.save(sample_login("https://a.example", "https://r2.example"))
    await store.save(sample_login("https://a.example", None))
    listed = [(login.issuer, login.resource) for login in await store.logins()]
    assert listed == [
        ("https://a.example", None),
        ("https://a.example", "https://r2.example"),
        ("https://b.example", None),
    ]


async def test_loaded_logins_are_independent_copies(store: TokenStore) -> None:
    """Changing a loaded login's data never changes what is stored."""
    await store.save(sample_login())
    first = await store.load(KEY)
    assert first is not None
    first.to_dict()["issuer"] = "x"  # a copy
    again = await store.load(KEY)
    assert again == first


async def test_read_modify_write_under_the_lock_loses_no_update(store: TokenStore) -> None:
    """Tasks that re-read and save under lock(key) never overwrite each other's update."""
    await store.save(dataclasses.replace(sample_login(), tokens=StoredTokens(access_token="0")))

    async def bump() -> None:
        async with store.lock(KEY):
            login = await store.load(KEY)
            assert login is not None
            assert login.tokens is not None
            value = int(login.tokens.access_token)
            await anyio.sleep(0.001)  # widen the window a missing lock would lose updates in
            tokens = StoredTokens(access_token=str(value + 1))
            await store.save(dataclasses.replace(login, tokens=tokens))

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(bump)
    login = await store.load(KEY)
    assert login is not None
    assert login.tokens is not None
    assert login.tokens.access_token == "20"


async def test_lock_is_per_key(store: TokenStore) -> None:
    """Holding the lock of one key does not hold up another key's."""
    async with store.lock(KEY):
        with anyio.fail_after(5):
            async with store.lock(LoginKey(ISSUER)):
                pass


async def test_cancelled_wait_for_the_lock_takes_nothing(store: TokenStore) -> None:
    """A task cancelled while waiting for lock(key) neither gets it nor frees the holder's."""
    holder_release = anyio.Event()
    held = anyio.Event()

    async def holder() -> None:
        async with store.lock(KEY):
            held.set()
            await holder_release.wait()

    async with anyio.create_task_group() as tg:
        tg.start_soon(holder)
        await held.wait()
        with anyio.move_on_after(0.2) as scope:
            async with store.lock(KEY):
                pytest.fail("got a lock that another task holds")
        assert scope.cancelled_caught
        # The holder still holds it: a third task cannot get in...
        with anyio.move_on_after(0.2) as probe:
            async with store.lock(KEY):
                pytest.fail("the cancelled waiter freed the holder's lock")
        assert probe.cancelled_caught
        holder_release.set()
    # ...and once the holder lets go, the lock is free (the cancelled waiter kept nothing).
    with anyio.fail_after(5):
        async with store.lock(KEY):
            pass


async def test_lock_is_released_when_the_body_raises(store: TokenStore) -> None:
    """An exception inside lock(key) releases it on the way out."""
    with pytest.raises(ZeroDivisionError):
        async with store.lock(KEY):
            1 / 0  # noqa: B018
    with anyio.fail_after(5):
        async with store.lock(KEY):
            pass


async def test_lock_is_released_when_the_body_is_cancelled(store: TokenStore) -> None:
    """A body cancelled while holding lock(key) still gives it back."""
    with anyio.move_on_after(0.05):
        async with store.lock(KEY):
            await anyio.sleep_forever()
    with anyio.fail_after(5):
        async with store.lock(KEY):
            pass


async def test_nothing_secret_reaches_the_logs(
    store: TokenStore, caplog: pytest.LogCaptureFixture
) -> None:
    """No token, secret or key appears in any log record, at DEBUG, from any logger."""
    caplog.set_level(logging.DEBUG)
    async with store.lock(KEY):
        await store.save(sample_login())
        login = await store.load(KEY)
    await store.logins()
    await store.delete(KEY)
    logging.getLogger("test").debug("loaded %r from %r", login, store)
    assert caplog.records, "expected the stores to log at DEBUG"
    for record in caplog.records:
        message = record.getMessage()
        for secret in SECRETS:
            assert secret not in message


async def test_store_reprs_hold_no_secret(store: TokenStore) -> None:
    """A store's repr never shows what it holds."""
    await store.save(sample_login())
    for secret in SECRETS:
        assert secret not in repr(store)


async def test_saved_login_keeps_its_issuer(store: TokenStore) -> None:
    """The issuer a login was saved under is the one it comes back with, never another."""
    await store.save(sample_login("https://one.example", None))
    await store.save(sample_login("https://two.example", None))
    one = await store.load(LoginKey("https://one.example"))
    assert one is not None
    assert one.client is not None
    assert one.issuer == one.client.issuer == "https://one.example"


async def test_saving_a_login_without_tokens_or_client(store: TokenStore) -> None:
    """A login of metadata alone (discovery cached before any login) stores fine."""
    bare = StoredLogin(issuer=ISSUER)
    saved = await store.save(bare)
    assert await store.load(LoginKey(ISSUER)) == saved


async def test_lock_is_not_reentrant(store: TokenStore) -> None:
    """Taking lock(key) again inside itself raises instead of deadlocking silently."""
    async with store.lock(KEY):
        with pytest.raises(RuntimeError):
            async with store.lock(KEY):
                pass
