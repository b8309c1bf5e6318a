"""Which launcher opens the sign-in page: --browser-command, $BROWSER, WSL's wslview or
explorer.exe, else webbrowser; each is handed the private page, never the authorization URL."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from oauth_loopback._login import _browser
from oauth_loopback.testing import AuthorizationServer

# A fake browser: records its argv, reads the page it was given and follows it like a browser.
FAKE_BROWSER = textwrap.dedent(
    """\
    #!{python}
    import html, re, sys, urllib.request, urllib.parse
    with open({record!r}, "a") as fh:
        fh.write(repr(sys.argv[1:]) + "\\n")
    page = urllib.parse.unquote(urllib.parse.urlsplit(sys.argv[-1]).path)
    target = html.unescape(re.search(r'url=([^"]+)"', open(page).read()).group(1))
    urllib.request.urlopen(target, timeout=10).read()
    """
)


def _executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(AuthorizationServer()) as running:
            yield running


def _login_in_a_child(
    issuer: str, env: dict[str, str], extra: str = ""
) -> subprocess.CompletedProcess[str]:
    code = f"import anyio, oauth_loopback as ol; t = anyio.run(lambda: ol.authorize({issuer!r}{extra})); print(t.token_type)"
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("how", ["browser-command", "BROWSER"])
def test_the_chosen_command_gets_the_page_and_the_login_completes(
    server: AuthorizationServer, tmp_path: Path, how: str
) -> None:
    """--browser-command and $BROWSER are used, with the page's file:// URL: never the state."""
    record = tmp_path / "argv.txt"
    fake = _executable(
        tmp_path / "fake-browser", FAKE_BROWSER.format(python=sys.executable, record=str(record))
    )
    env = dict(os.environ)
    env.pop("DISPLAY", None)
    if how == "BROWSER":
        env["BROWSER"] = str(fake)
        result = _login_in_a_child(server.issuer, env)
    else:
        env.pop("BROWSER", None)
        result = _login_in_a_child(
            server.issuer, env, f", browser_command={str(fake) + ' --new-window'!r}"
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "Bearer"
    (argv,) = record.read_text().splitlines()
    assert "file://" in argv
    assert "state=" not in argv
    assert ("--new-window" in argv) is (how == "browser-command")


@pytest.fixture
def wsl(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake WSL: /proc/version naming Microsoft, an empty PATH to add fake commands to."""
    version = tmp_path / "version"
    version.write_text("Linux version 5.15.153.1-microsoft-standard-WSL2 (root@1) #1 SMP\n")
    monkeypatch.setattr(_browser, "PROC_VERSION", version)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.delenv("BROWSER", raising=False)
    monkeypatch.delenv("WSL_DISTRO_NAME", raising=False)
    return bin_dir


def test_wsl_prefers_wslview(wsl: Path, tmp_path: Path) -> None:
    """In WSL with wslu installed, wslview gets the page's path."""
    wslview = _executable(wsl / "wslview", "#!/bin/sh\n")
    _executable(wsl / "explorer.exe", "#!/bin/sh\n")
    page = tmp_path / "sign-in.html"
    assert _browser.in_wsl()
    assert _browser._launcher(page, None) == [str(wslview), str(page)]


def test_wsl_falls_back_to_explorer_with_the_windows_path(wsl: Path, tmp_path: Path) -> None:
    """Without wslview: explorer.exe with wslpath's Windows path; never cmd.exe."""
    explorer = _executable(wsl / "explorer.exe", "#!/bin/sh\n")
    _executable(wsl / "cmd.exe", "#!/bin/sh\nexit 1\n")
    _executable(wsl / "wslpath", "#!/bin/sh\necho 'C:\\\\Users\\\\me\\\\sign-in.html'\n")
    page = tmp_path / "sign-in.html"
    argv = _browser._launcher(page, None)
    assert argv == [str(explorer), "C:\\Users\\me\\sign-in.html"]
    assert argv is not None
    assert not any("cmd.exe" in part for part in argv)


def test_browser_wins_over_wsl_and_the_command_over_both(
    wsl: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """$BROWSER is left to webbrowser (None); an explicit browser command beats everything."""
    _executable(wsl / "wslview", "#!/bin/sh\n")
    page = tmp_path / "sign-in.html"
    monkeypatch.setenv("BROWSER", "my-browser")
    assert _browser._launcher(page, None) is None
    assert _browser._launcher(page, "chromium --incognito") == [
        "chromium",
        "--incognito",
        page.as_uri(),
    ]


def test_not_wsl_uses_webbrowser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A plain Linux /proc/version: the launcher is webbrowser's."""
    version = tmp_path / "version"
    version.write_text("Linux version 6.1.0-18-amd64 (debian-kernel@lists.debian.org)\n")
    monkeypatch.setattr(_browser, "PROC_VERSION", version)
    monkeypatch.delenv("WSL_DISTRO_NAME", raising=False)
    monkeypatch.delenv("BROWSER", raising=False)
    assert not _browser.in_wsl()
    assert _browser._launcher(tmp_path / "p.html", None) is None


def test_a_missing_browser_command_reports_that_it_did_not_open(tmp_path: Path) -> None:
    """A command that does not exist: False (the caller then tells the user), no exception."""
    assert _browser._open_page(tmp_path / "p.html", str(tmp_path / "no-such-browser")) is False
