"""KeyringTokenStore: entries and index in a real keyring backend, errors that name the fix."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.backend
import pytest

from oauth_loopback._errors import TokenStoreError
from oauth_loopback._store import KeyringTokenStore, LoginKey

from ._helpers import ISSUER, RESOURCE, SECRETS, DictKeyring, sample_login

pytestmark = pytest.mark.anyio

KEY = LoginKey(ISSUER, RESOURCE)


@pytest.fixture
def backend() -> DictKeyring:
    return DictKeyring()


@pytest.fixture
def store(backend: DictKeyring, tmp_path: Path) -> KeyringTokenStore:
    return KeyringTokenStore(backend=backend, lock_path=tmp_path / "locks")


@pytest.fixture
def default_keyring(backend: DictKeyring) -> Iterator[DictKeyring]:
    """Make the test backend keyring's configured default for the length of a test."""
    previous = keyring.get_keyring()
    keyring.set_keyring(backend)
    try:
        yield backend
    finally:
        keyring.set_keyring(previous)


async def test_login_is_one_entry_plus_an_index(
    store: KeyringTokenStore, backend: DictKeyring
) -> None:
    """A saved login is one entry of JSON; the index lists its key and holds no secret."""
    saved = await store.save(sample_login())
    entry = backend.entries[("oauth-loopback", f"login:{KEY.digest}")]
    assert json.loads(entry) == saved.to_dict()
    index = backend.entries[("oauth-loopback", "index")]
    assert json.loads(index)["logins"] == [{"issuer": ISSUER, "resource": RESOURCE}]
    for secret in SECRETS:
        assert secret not in index


async def test_default_backend_is_keyrings_configured_one(default_keyring: DictKeyring) -> None:
    """Without backend=, the store uses the keyring that `keyring` is configured with."""
    store = KeyringTokenStore(service="my-cli")
    saved = await store.save(sample_login())
    assert ("my-cli", f"login:{KEY.digest}") in default_keyring.entries
    assert await store.load(KEY) == saved
    assert store.service == "my-cli"


async def test_services_keep_their_logins_apart(backend: DictKeyring, tmp_path: Path) -> None:
    """Two service names are two separate stores in one keyring."""
    one = KeyringTokenStore("one", backend=backend, lock_path=tmp_path)
    two = KeyringTokenStore("two", backend=backend, lock_path=tmp_path)
    await one.save(sample_login())
    assert await two.load(KEY) is None
    assert await two.logins() == []


async def test_index_is_updated_once_per_key(
    store: KeyringTokenStore, backend: DictKeyring
) -> None:
    """Saving a key again does not duplicate it in the index; deleting removes it."""
    await store.save(sample_login())
    await store.save(sample_login())
    await store.save(sample_login(resource=None))
    index = json.loads(backend.entries[("oauth-loopback", "index")])
    assert len(index["logins"]) == 2
    await store.delete(KEY)
    index = json.loads(backend.entries[("oauth-loopback", "index")])
    assert index["logins"] == [{"issuer": ISSUER, "resource": None}]


async def test_entry_deleted_behind_our_back_is_skipped(
    store: KeyringTokenStore, backend: DictKeyring
) -> None:
    """An index entry whose login was removed with another tool is skipped by logins()."""
    await store.save(sample_login())
    await store.save(sample_login(resource=None))
    del backend.entries[("oauth-loopback", f"login:{KEY.digest}")]
    assert [login.key for login in await store.logins()] == [LoginKey(ISSUER)]


async def test_entry_of_another_issuer_is_refused(
    store: KeyringTokenStore, backend: DictKeyring
) -> None:
    """An entry whose content names another issuer than its key is never handed out."""
    other = LoginKey("https://evil.example")
    await store.save(sample_login())
    backend.entries[("oauth-loopback", f"login:{other.digest}")] = backend.entries[
        ("oauth-loopback", f"login:{KEY.digest}")
    ]
    with pytest.raises(TokenStoreError, match="never used with another issuer"):
        await store.load(other)


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param("not json", "not valid JSON", id="corrupt"),
        pytest.param('{"password": "hunter2"}', "not an oauth-loopback login", id="foreign"),
    ],
)
async def test_unreadable_entry_is_a_clear_error_and_left_untouched(
    store: KeyringTokenStore, backend: DictKeyring, content: str, match: str
) -> None:
    """A corrupt or foreign entry raises, names the entry and `keyring del`, and stays as it was."""
    entry = ("oauth-loopback", f"login:{KEY.digest}")
    backend.entries[entry] = content
    for operation in (store.load(KEY), store.save(sample_login())):
        with pytest.raises(TokenStoreError, match=match) as caught:
            await operation
        assert f"keyring del oauth-loopback login:{KEY.digest}" in str(caught.value)
    assert backend.entries[entry] == content
    assert await store.delete(KEY) is True  # what `logout` does still works


async def test_corrupt_index_is_a_clear_error(
    store: KeyringTokenStore, backend: DictKeyring
) -> None:
    """A damaged index raises naming the index entry, and says the logins are intact."""
    await store.save(sample_login())
    backend.entries[("oauth-loopback", "index")] = "[]"
    with pytest.raises(TokenStoreError, match="logins themselves are intact"):
        await store.logins()
    assert await store.load(KEY) is not None


async def test_keyring_failure_becomes_a_token_store_error(tmp_path: Path) -> None:
    """A backend that refuses a value (too large) raises TokenStoreError naming the way out."""
    store = KeyringTokenStore(backend=DictKeyring(max_size=100), lock_path=tmp_path)
    with pytest.raises(TokenStoreError, match="FileTokenStore") as caught:
        await store.save(sample_login())
    assert "PasswordSetError" in str(caught.value)
    for secret in SECRETS:
        assert secret not in str(caught.value)


async def test_no_keyring_available_is_a_clear_error(tmp_path: Path) -> None:
    """With no usable keyring (keyring's fail backend), the error says to set one up."""
    from keyring.backends import fail

    no_keyring = fail.Keyring()  # type: ignore[no-untyped-call]  # keyring's __init__ is untyped
    store = KeyringTokenStore(backend=no_keyring, lock_path=tmp_path)
    with pytest.raises(TokenStoreError, match="set up a keyring backend"):
        await store.load(KEY)


def test_missing_keyring_package_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the keyring package, KeyringTokenStore() says: pip install 'oauth-loopback[keyring]'."""
    monkeypatch.setitem(sys.modules, "keyring", None)  # makes `import keyring` fail
    with pytest.raises(ImportError, match=r"pip install 'oauth-loopback\[keyring\]'"):
        KeyringTokenStore()


def test_service_must_be_named() -> None:
    """An empty service name is refused at once."""
    with pytest.raises(ValueError, match="service"):
        KeyringTokenStore("")


def test_repr_and_lock_path(tmp_path: Path) -> None:
    """The repr names the service; lock_path is where the lock files go."""
    store = KeyringTokenStore("svc", backend=DictKeyring(), lock_path=tmp_path / "l")
    assert repr(store) == "KeyringTokenStore(service='svc')"
    assert store.lock_path == tmp_path / "l"


def test_test_backend_is_a_real_keyring_backend() -> None:
    """The backend these tests use is a keyring.backend.KeyringBackend like the OS ones."""
    assert isinstance(DictKeyring(), keyring.backend.KeyringBackend)
