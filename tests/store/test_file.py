"""FileTokenStore: private modes, atomic writes, and files it refuses to trust or overwrite."""

from __future__ import annotations

import json
import os
import stat
import sys
import textwrap
from pathlib import Path

import anyio
import pytest

from oauth_loopback._errors import TokenStoreError
from oauth_loopback._store import FileTokenStore, LoginKey, StoredLogin

from ._helpers import ISSUER, RESOURCE, SECRETS, sample_login

pytestmark = pytest.mark.anyio

KEY = LoginKey(ISSUER, RESOURCE)
ROOT = str(Path(__file__).resolve().parent.parent)
posix_only = pytest.mark.skipif(os.name != "posix", reason="POSIX modes and owners")


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def _snapshot(path: Path) -> tuple[bytes, int]:
    return path.read_bytes(), _mode(path)


@pytest.fixture
def store(tmp_path: Path) -> FileTokenStore:
    """A store in a directory that does not exist yet."""
    return FileTokenStore(tmp_path / "state" / "logins")


@posix_only
async def test_directory_is_0700_and_files_are_0600(store: FileTokenStore) -> None:
    """The store creates its directory 0700 and every file 0600, whatever the umask."""
    old = os.umask(0)  # the most permissive umask: the modes must not depend on it
    try:
        await store.save(sample_login())
        async with store.lock(KEY):
            lock_file = store.path / f"{KEY.digest}.lock"
            assert _mode(lock_file) == 0o600
    finally:
        os.umask(old)
    assert _mode(store.path) == 0o700
    assert _mode(store.path_for(KEY)) == 0o600


async def test_one_file_per_login_named_by_the_key_hash(store: FileTokenStore) -> None:
    """Each login is one JSON file named after its key's hash; the name shows no URL."""
    await store.save(sample_login())
    await store.save(sample_login(resource=None))
    names = sorted(p.name for p in store.path.iterdir() if p.suffix == ".json")
    assert names == sorted([f"{KEY.digest}.json", f"{LoginKey(ISSUER).digest}.json"])
    data = json.loads(store.path_for(KEY).read_text("utf-8"))
    assert data["format"] == "oauth-loopback/login"
    assert data["issuer"] == ISSUER


async def test_reading_creates_nothing(store: FileTokenStore) -> None:
    """load, logins and delete on a store that was never written create no directory."""
    assert await store.load(KEY) is None
    assert await store.logins() == []
    assert await store.delete(KEY) is False
    assert not store.path.exists()


@pytest.mark.skipif(sys.platform != "linux", reason="XDG_STATE_HOME is the Linux convention")
def test_default_directory_is_the_user_state_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """FileTokenStore() lives in platformdirs' user state directory for oauth-loopback."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert FileTokenStore().path == tmp_path / "xdg" / "oauth-loopback" / "logins"


def test_path_accepts_a_string_with_a_tilde(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """path= may be a str with ~, expanded to the home directory."""
    monkeypatch.setenv("HOME", str(tmp_path))
    assert FileTokenStore("~/tokens").path == tmp_path / "tokens"


async def test_failed_write_leaves_the_old_file_and_no_temporary(
    store: FileTokenStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A save that fails after writing its temporary file leaves the old login intact."""
    saved = await store.save(sample_login())
    before = _snapshot(store.path_for(KEY))
    written: list[Path] = []

    def failing_replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        written.append(Path(src))
        assert Path(src).read_bytes()  # the new data is fully in the temporary file
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(TokenStoreError, match="unchanged") as caught:
        await store.save(sample_login(access="ACCESS-NEW"))
    monkeypatch.undo()
    assert caught.value.path == str(store.path_for(KEY))
    assert written
    assert not written[0].exists()
    assert _snapshot(store.path_for(KEY)) == before
    assert await store.load(KEY) == saved


@posix_only
async def test_crash_mid_save_leaves_the_old_file(store: FileTokenStore) -> None:
    """A process killed between writing the new file and renaming it leaves the old login."""
    saved = await store.save(sample_login())
    before = _snapshot(store.path_for(KEY))
    script = textwrap.dedent(
        """
        import os, signal, sys
        import anyio
        from oauth_loopback._store import FileTokenStore
        sys.path.insert(0, sys.argv[2])
        from tests.store._helpers import sample_login

        def crash(src, dst):
            os.kill(os.getpid(), signal.SIGKILL)  # a real crash: no cleanup runs

        os.replace = crash
        anyio.run(FileTokenStore(sys.argv[1]).save, sample_login(access="ACCESS-NEW"))
        """
    )
    result = await anyio.run_process(
        [sys.executable, "-c", script, str(store.path), ROOT], check=False
    )
    assert result.returncode == -9
    assert _snapshot(store.path_for(KEY)) == before
    leftovers = [p for p in store.path.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1
    assert _mode(leftovers[0]) == 0o600
    assert await store.load(KEY) == saved
    assert await store.logins() == [saved]  # the orphan is not mistaken for a login


async def _write_raw(store: FileTokenStore, data: bytes, mode: int = 0o600) -> Path:
    """Put bytes where the login for KEY lives, as a damaged or foreign file would be."""
    await store.save(sample_login())  # creates the directory properly
    path = store.path_for(KEY)
    path.write_bytes(data)
    os.chmod(path, mode)
    return path


def _foreign() -> bytes:
    return json.dumps({"access_token": SECRETS[0], "token_type": "Bearer"}).encode()


def _newer() -> bytes:
    data = sample_login().to_dict()
    data["version"] = 2
    return json.dumps(data).encode()


def _damaged() -> bytes:
    data = sample_login().to_dict()
    tokens = data["tokens"]
    assert isinstance(tokens, dict)
    tokens["expires_at"] = "soon"
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        pytest.param(lambda: b'{"format": "oauth-loopback/lo', "not valid JSON", id="truncated"),
        pytest.param(lambda: b"\xff\xfe\x00garbage", "not valid JSON", id="not-utf8"),
        pytest.param(lambda: b"", "not valid JSON", id="empty"),
        pytest.param(_foreign, "not an oauth-loopback login", id="foreign-json"),
        pytest.param(_newer, "Upgrade oauth-loopback", id="newer-version"),
        pytest.param(_damaged, r"damaged: tokens\.expires_at", id="damaged-field"),
    ],
)
async def test_untrusted_file_is_a_clear_error_and_left_untouched(
    store: FileTokenStore, content: object, match: str
) -> None:
    """A corrupt, foreign or newer file raises TokenStoreError naming it; load and save leave it be."""
    assert callable(content)
    path = await _write_raw(store, content())
    before = _snapshot(path)
    for operation in (store.load(KEY), store.save(sample_login()), store.logins()):
        with pytest.raises(TokenStoreError, match=match) as caught:
            await operation
        message = str(caught.value)
        assert str(path) in message
        assert "left untouched" in message
        assert caught.value.path == str(path)
        for secret in SECRETS:
            assert secret not in message
    assert _snapshot(path) == before


async def test_damaged_file_error_suggests_logout_for_its_issuer(store: FileTokenStore) -> None:
    """When the issuer can be read, the fix offered is `oauth-loopback logout ISSUER`."""
    await _write_raw(store, _damaged())
    with pytest.raises(TokenStoreError, match=f"oauth-loopback logout {ISSUER}"):
        await store.load(KEY)


async def test_delete_removes_even_an_unreadable_file(store: FileTokenStore) -> None:
    """delete() (what logout does) removes a corrupt file, so the fix the error names works."""
    await _write_raw(store, b"not json")
    assert await store.delete(KEY) is True
    assert await store.load(KEY) is None


@posix_only
@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o606])
async def test_group_or_other_readable_file_is_refused(store: FileTokenStore, mode: int) -> None:
    """A login file with any group/other bit raises, says chmod 600, and is left as it was."""
    await store.save(sample_login())
    path = store.path_for(KEY)
    os.chmod(path, mode)
    before = _snapshot(path)
    for operation in (store.load(KEY), store.save(sample_login())):
        with pytest.raises(TokenStoreError, match=f"chmod 600 {path}"):
            await operation
    assert _snapshot(path) == before


@posix_only
async def test_group_or_other_accessible_directory_is_refused(store: FileTokenStore) -> None:
    """A store directory others can enter raises and says chmod 700."""
    await store.save(sample_login())
    os.chmod(store.path, 0o755)  # noqa: S103  (the too-open mode under test)
    with pytest.raises(TokenStoreError, match=f"chmod 700 {store.path}"):
        await store.load(KEY)
    with pytest.raises(TokenStoreError, match="chmod 700"):
        async with store.lock(KEY):
            pass


@posix_only
@pytest.mark.skipif(os.name != "posix" or os.geteuid() != 0, reason="chown needs root")
async def test_file_of_another_user_is_refused(store: FileTokenStore) -> None:
    """A login file owned by another uid is not trusted or overwritten, even with mode 0600."""
    await store.save(sample_login())
    path = store.path_for(KEY)
    os.chown(path, 4242, 4242)
    before = _snapshot(path)
    for operation in (store.load(KEY), store.save(sample_login())):
        with pytest.raises(TokenStoreError, match="belongs to uid 4242"):
            await operation
    assert _snapshot(path) == before
    assert os.stat(path).st_uid == 4242


@posix_only
async def test_symlinked_login_file_is_refused(store: FileTokenStore, tmp_path: Path) -> None:
    """A symlink in place of a login file is refused, and its target is never written."""
    await store.save(sample_login())
    target = tmp_path / "elsewhere.json"
    target.write_bytes(store.path_for(KEY).read_bytes())
    os.chmod(target, 0o600)
    store.path_for(KEY).unlink()
    store.path_for(KEY).symlink_to(target)
    before = target.read_bytes()
    for operation in (store.load(KEY), store.save(sample_login(access="X"))):
        with pytest.raises(TokenStoreError, match="symbolic link"):
            await operation
    assert target.read_bytes() == before


async def test_file_renamed_to_another_key_is_refused(store: FileTokenStore) -> None:
    """A login copied under another key's name is never handed out for that key's issuer."""
    other = LoginKey("https://evil.example", RESOURCE)
    await store.save(sample_login())
    path = store.path_for(other)
    path.write_bytes(store.path_for(KEY).read_bytes())
    os.chmod(path, 0o600)
    with pytest.raises(TokenStoreError, match="never used with another issuer"):
        await store.load(other)
    with pytest.raises(TokenStoreError, match="renamed or copied"):
        await store.logins()
    with pytest.raises(TokenStoreError, match="renamed or copied"):
        await store.save(sample_login("https://evil.example"))


async def test_unknown_fields_in_a_file_survive_a_save(store: FileTokenStore) -> None:
    """A field a newer 1.x version wrote is still in the file after this version saves."""
    data = sample_login().to_dict()
    data["added_later"] = [1]
    path = await _write_raw(store, json.dumps(data).encode())
    login = await store.load(KEY)
    assert login is not None
    await store.save(login)
    assert json.loads(path.read_text("utf-8"))["added_later"] == [1]


async def test_two_store_objects_share_the_lock(tmp_path: Path) -> None:
    """Two FileTokenStore objects on one directory exclude each other (the lock is the file)."""
    first = FileTokenStore(tmp_path / "logins")
    second = FileTokenStore(tmp_path / "logins")
    async with first.lock(KEY):
        with anyio.move_on_after(0.3) as scope:
            async with second.lock(KEY):
                pytest.fail("a second store object got a lock the first holds")
        assert scope.cancelled_caught
    with anyio.fail_after(5):
        async with second.lock(KEY):
            pass


async def test_lock_on_a_path_that_is_a_file_is_a_clear_error(tmp_path: Path) -> None:
    """A store path that is a file, not a directory, raises TokenStoreError saying so."""
    (tmp_path / "file").write_text("x")
    store = FileTokenStore(tmp_path / "file")
    with pytest.raises(TokenStoreError, match="not a directory"):
        await store.save(sample_login())
    with pytest.raises(TokenStoreError, match="not a directory"):
        async with store.lock(KEY):
            pass


async def test_saved_file_holds_the_secrets_only_in_its_0600_body(store: FileTokenStore) -> None:
    """Secrets are in the file's content (that is the point) and in no file name."""
    await store.save(sample_login())
    for path in store.path.iterdir():
        for secret in SECRETS:
            assert secret not in path.name
    assert SECRETS[0] in store.path_for(KEY).read_text("utf-8")


def test_repr_shows_the_directory(tmp_path: Path) -> None:
    """A FileTokenStore's repr names its directory."""
    assert repr(FileTokenStore(tmp_path)) == f"FileTokenStore(path={str(tmp_path)!r})"


async def test_loaded_login_is_a_stored_login(store: FileTokenStore) -> None:
    """load() returns the StoredLogin record (the API get_token builds on)."""
    await store.save(sample_login())
    assert isinstance(await store.load(KEY), StoredLogin)
