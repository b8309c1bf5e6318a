"""Nothing secret on the process table: the authorization URL never reaches argv or environ.

The default launcher hands the browser a private redirect page, never the URL with its
``state``. Proven with real processes: a child Python process launches a fake browser (as
``$BROWSER``, and as ``xdg-open`` on ``PATH``), and while that fake browser is alive the test
reads ``/proc/<pid>/cmdline`` and ``/proc/<pid>/environ`` of it and of every other process it
may read. The page itself (where it is, who may read it, what it says, when it goes) is
checked in-process.
"""

from __future__ import annotations

import os
import stat
import sys
import tempfile
import time
import webbrowser
from pathlib import Path
from urllib.parse import quote

import anyio
import anyio.abc
import platformdirs
import pytest

from oauth_loopback._login import _browser
from oauth_loopback._login._browser import launch_browser, redirect_page

pytestmark = pytest.mark.anyio

STATE = "Zk3-state-" + "q" * 40
URL = (
    "https://as.example/authorize?response_type=code&client_id=cli&state="
    f"{STATE}&redirect_uri={quote('http://127.0.0.1:1234/callback', safe='')}"
    "&code_challenge=abc&code_challenge_method=S256&x=%22'%3E"
)

_CHILD = """\
import sys, anyio
from oauth_loopback._login._browser import launch_browser

async def main():
    url = sys.stdin.readline().strip()  # the URL comes on stdin, never on our argv
    opened = await launch_browser(url)
    print("OPENED", opened, flush=True)

anyio.run(main, backend=sys.argv[1])
"""

_FAKE_BROWSER = """\
#!{python}
import os, sys
print("BROWSER", os.getpid(), flush=True)
with open(os.environ["FAKE_BROWSER_GATE"]) as gate:  # a FIFO: wait for the test's word
    gate.read()
"""


def _readable_tables() -> dict[int, bytes]:
    """argv and environ of every process we may read, by pid."""
    tables: dict[int, bytes] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        data = b""
        for name in ("cmdline", "environ"):
            try:
                with open(f"/proc/{entry}/{name}", "rb") as fh:
                    data += fh.read() + b"\n"
            except OSError:
                continue  # gone, or another user's
        tables[int(entry)] = data
    return tables


def _check_tables(browser_pid: int, fake: Path, parent: Path) -> None:
    """No readable argv/environ holds the secret; the browser got the private page instead."""
    with open(f"/proc/{browser_pid}/cmdline", "rb") as fh:
        argv = fh.read().split(b"\0")[:-1]
    tables = _readable_tables()
    assert tables[browser_pid]  # we could read the browser's own table
    for pid, table in tables.items():
        assert STATE.encode() not in table, f"the state is on pid {pid}'s process table"
        assert b"as.example/authorize" not in table, f"the URL is on pid {pid}'s table"
    # The fake browser is a script: the kernel runs its interpreter with the script's path.
    assert argv[1:-1] == [str(fake).encode()]
    page_uri = argv[-1].decode()
    assert page_uri.startswith("file:///")
    page = Path(page_uri.removeprefix("file://"))
    assert page.parent.parent == parent
    assert page.parent.name.startswith(".oauth-loopback-sign-in-")
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700
    assert page.parent.stat().st_uid == os.getuid()
    assert page.read_bytes() == redirect_page(URL)


def _release(gate: Path) -> None:
    with open(gate, "w"):  # blocks until the fake browser opens its end
        pass


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("where", ["downloads", "tmp"])
@pytest.mark.parametrize("launcher", ["BROWSER", "xdg-open"])
async def test_default_launcher_puts_no_secret_on_any_process_table(
    tmp_path: Path, launcher: str, where: str, anyio_backend: tuple[str, object]
) -> None:
    """While the launched browser runs, no process's argv or environ holds the URL or state."""
    bin_dir, home, tmp = tmp_path / "bin", tmp_path / "home", tmp_path / "tmp"
    for directory in (bin_dir, home, tmp):
        directory.mkdir()
    if where == "downloads":
        (home / "Downloads").mkdir()
    fake = bin_dir / ("fake-browser" if launcher == "BROWSER" else "xdg-open")
    fake.write_text(_FAKE_BROWSER.format(python=sys.executable))
    fake.chmod(0o700)
    gate = tmp_path / "gate"
    os.mkfifo(gate)
    (tmp_path / "child.py").write_text(_CHILD)
    env = {
        "HOME": str(home),
        "TMPDIR": str(tmp),
        "PATH": str(bin_dir),
        "FAKE_BROWSER_GATE": str(gate),
        "XDG_CONFIG_HOME": str(home / ".config"),
    }
    if launcher == "BROWSER":
        env["BROWSER"] = str(fake)
    else:
        env["DISPLAY"] = ":99"  # webbrowser then tries xdg-open (and finds ours on PATH)
    browser_pid = None
    async with await anyio.open_process(
        [sys.executable, str(tmp_path / "child.py"), anyio_backend[0]],
        stdin=-1,
        stdout=-1,
        env=env,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            await child.stdin.send(URL.encode() + b"\n")
            lines: list[str] = []
            buffered = b""
            with anyio.fail_after(20):
                while browser_pid is None:
                    buffered += await child.stdout.receive()
                    *done, buffered = buffered.split(b"\n")
                    lines += [line.decode() for line in done]
                    for line in lines:
                        if line.startswith("BROWSER "):
                            browser_pid = int(line.split()[1])

            _check_tables(browser_pid, fake, home / "Downloads" if where == "downloads" else tmp)
        finally:
            with anyio.fail_after(10):
                await anyio.to_thread.run_sync(_release, gate, abandon_on_cancel=True)
        with anyio.fail_after(20):
            rest = b""
            async for chunk in child.stdout:
                rest += chunk
            assert await child.wait() == 0
    assert "OPENED True" in lines + rest.decode().splitlines()


# --- the page, in-process -----------------------------------------------------------------


@pytest.fixture
def launched(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> list[str]:
    """webbrowser.open stand-in: records what the launcher was given (the process boundary)."""
    given: list[str] = []

    def fake_open(url: str) -> bool:
        given.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    monkeypatch.setattr(_browser, "_page_parent", lambda: tmp_path)
    return given


def _page_of(uri: str) -> Path:
    assert uri.startswith("file:///")
    return Path(uri.removeprefix("file://"))


def _check_page(page: Path) -> None:
    html = page.read_text()
    escaped = URL.replace("&", "&amp;").replace('"', "&quot;").replace("'", "&#x27;")
    escaped = escaped.replace(">", "&gt;")
    assert f'<meta http-equiv=refresh content="0;url={escaped}">' in html
    assert f'<a href="{escaped}" rel=noreferrer>' in html
    assert "<script" not in html.lower()
    assert "default-src 'none'" in html
    assert "no-referrer" in html
    assert "as.example" in html
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    assert stat.S_IMODE(page.parent.stat().st_mode) == 0o700


async def test_redirect_page_is_private_escaped_and_scriptless(launched: list[str]) -> None:
    """The launcher gets a file:// page (0600 in a 0700 dir) that redirects, with no script."""
    async with anyio.create_task_group() as tg:
        assert await launch_browser(URL, task_group=tg)
        assert STATE not in launched[0]
        _check_page(_page_of(launched[0]))
        tg.cancel_scope.cancel()


async def test_redirect_page_goes_when_the_login_ends(launched: list[str]) -> None:
    """Leaving the task group that owns the page (the login finished) removes page and dir."""
    async with anyio.create_task_group() as tg:
        await launch_browser(URL, task_group=tg)
        page = anyio.Path(_page_of(launched[0]))
        assert await page.exists()
        tg.cancel_scope.cancel()
    assert not await page.exists()
    assert not await page.parent.exists()


async def test_redirect_page_goes_after_its_lifetime(
    launched: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A page outliving PAGE_LIFETIME is removed while the login still runs."""
    monkeypatch.setattr(_browser, "PAGE_LIFETIME", 0.2)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as owner:
            await launch_browser(URL, task_group=owner)
            page = anyio.Path(_page_of(launched[0]))
            assert await page.exists()
        # Nothing else runs in ``owner``: it ends once the lifetime passed and the page went.
    assert not await page.parent.exists()


async def test_launcher_failure_removes_the_page_at_once(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """webbrowser.open returning False: launch_browser says so and leaves no page behind."""
    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    monkeypatch.setattr(_browser, "_page_parent", lambda: tmp_path)
    assert not await launch_browser(URL)
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


async def test_custom_opener_gets_the_real_url_and_no_page_is_written(
    launched: list[str], tmp_path: Path
) -> None:
    """open_browser= is called in-process with the authorization URL itself; no file, no launch."""
    got: list[str] = []
    assert await launch_browser(URL, got.append)
    assert got == [URL]
    assert launched == []
    assert [p async for p in anyio.Path(tmp_path).iterdir()] == []


def _leftovers(tmp_path: Path) -> tuple[Path, Path, Path]:
    stale = tmp_path / ".oauth-loopback-sign-in-dead"
    stale.mkdir(mode=0o700)
    (stale / "sign-in.html").write_bytes(redirect_page(URL))
    old = time.time() - 3600
    os.utime(stale, (old, old))
    fresh = tmp_path / ".oauth-loopback-sign-in-alive"
    fresh.mkdir(mode=0o700)
    (fresh / "sign-in.html").write_bytes(b"x")
    unrelated = tmp_path / "oauth-loopback-notes"
    unrelated.mkdir()
    os.utime(unrelated, (old, old))
    return stale, fresh, unrelated


async def test_pages_a_killed_process_left_are_swept(launched: list[str], tmp_path: Path) -> None:
    """A page older than its lifetime (its process died) is removed at the next launch."""
    stale, fresh, unrelated = _leftovers(tmp_path)
    await launch_browser(URL)
    assert not await anyio.Path(stale).exists()
    assert await anyio.Path(fresh).exists()
    assert await anyio.Path(unrelated).exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the Linux placement")
@pytest.mark.parametrize("has_downloads", [True, False])
def test_pages_go_where_a_confined_browser_can_read_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, has_downloads: bool
) -> None:
    """Linux: the downloads folder (snap/flatpak browsers read it) when there is one, else TMPDIR."""
    downloads = tmp_path / "Downloads"
    if has_downloads:
        downloads.mkdir()
    monkeypatch.setattr(platformdirs, "user_downloads_dir", lambda: str(downloads))
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "t"))
    expected = downloads if has_downloads else tmp_path / "t"
    assert _browser._page_parent() == expected
