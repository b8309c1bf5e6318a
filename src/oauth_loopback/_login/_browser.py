"""Open the authorization URL in the user's browser: safely, and without publishing it.

**What is handed over.** A browser launcher (``webbrowser``, ``xdg-open``, ``open``,
``start``) will happily run ``file:``, ``javascript:`` or custom-scheme URLs, and on some
platforms pass arguments to a shell. An authorization URL comes from server metadata, which
an attacker may control, so we refuse anything but ``https://`` or ``http://`` to a loopback
address before launching.

**How.** The authorization URL carries this login's ``state``. Handed to a launcher, it
would sit in the argv of ``xdg-open`` and of a freshly started browser, where every user of
the machine can read it (``/proc/<pid>/cmdline``, ``ps``) and answer the receiver first with
``error=access_denied`` or a code of their own. So the default launcher never sees it: we
write a page that redirects to it (``<meta http-equiv=refresh>`` and a link, no script) into
a new directory only this user may enter (0700, the file 0600), and hand the launcher that
page's ``file://`` URL, as Jupyter does for its tokens. What the process table shows is the
path of the page: nothing secret. The page is removed when the caller's task group ends (the
login finished) or after :data:`PAGE_LIFETIME`, whichever comes first; pages a killed process
left behind are swept at the next launch.

**Where.** On Linux the page goes in a hidden directory inside the user's downloads folder
(XDG ``DOWNLOAD`` dir, via platformdirs), the one place a snap- or flatpak-confined browser
(Ubuntu's default Firefox and Chromium) may read besides its own; ``/tmp`` is private to
them. Without a downloads folder, and on macOS and Windows (whose temporary directories are
per-user), it goes in the temporary directory. A custom ``open_browser`` is given the real
URL, in-process: it decides itself what to do with it.

**Which launcher**, in this order (each is handed the page, never the URL):

1. ``browser_command`` (``--browser-command``): that command, split like a shell would
   (no shell runs it), with the page's ``file://`` URL as its last argument;
2. ``$BROWSER``: honoured by :mod:`webbrowser` (its entries separated by ``os.pathsep``);
3. in WSL (``/proc/version`` names Microsoft), where Python's :mod:`webbrowser` finds no
   browser: ``wslview PAGE`` when wslu is installed, else ``explorer.exe`` with the page's
   Windows path (``wslpath -w``). Never ``cmd.exe``, which splits a URL at ``&``;
4. :func:`webbrowser.open` (``xdg-open``, ``open``, ``start``).
"""

from __future__ import annotations

import inspect
import logging
import os
import stat
import sys
import tempfile
import time
import webbrowser
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import anyio
import anyio.to_thread
import platformdirs

from .._errors import UnsafeBrowserURL
from .._loopback import is_loopback_host

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = [
    "PAGE_LIFETIME",
    "BrowserOpener",
    "UnsafeBrowserURL",
    "check_browser_url",
    "launch_browser",
]

logger = logging.getLogger("oauth_loopback.browser")

#: Seconds a redirect page is kept at most. A browser that is not running yet may take a
#: few seconds to start and read it; a minute covers slow machines with room to spare.
PAGE_LIFETIME = 60.0
_PAGE_PREFIX = ".oauth-loopback-sign-in-"
_PAGE_NAME = "sign-in.html"
_SWEEP_LIMIT = 4096  # directory entries looked at when sweeping stale pages

#: ``open_browser(url)``: sync or async; its return value is ignored, except ``False`` from
#: a sync opener (as :func:`webbrowser.open` returns) which is logged as "did not open".
BrowserOpener = Callable[[str], "Awaitable[object] | object"]


def check_browser_url(url: str) -> str:
    """Return ``url`` if it is ``https://host/...`` or ``http://<loopback>/...``; else raise.

    :raises UnsafeBrowserURL: with the reason and what to fix.
    """
    if not isinstance(url, str) or not url:
        msg = f"The authorization URL must be a non-empty string, not {url!r}."
        raise UnsafeBrowserURL(msg)
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in url):
        msg = (
            "The authorization URL contains spaces or control characters, which a browser "
            "launcher could misread as extra arguments; refusing to open it. Check the "
            "authorization server's metadata (authorization_endpoint)."
        )
        raise UnsafeBrowserURL(msg)
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        host = parts.hostname
    except ValueError:
        host = None
    if scheme not in ("https", "http") or not host:
        msg = (
            f"Refusing to open {parts.scheme or 'a scheme-less'}: URL in the browser: only "
            f"https:// URLs (or http:// to a loopback address, for local test servers) are "
            f"opened. Check the authorization server's metadata (authorization_endpoint)."
        )
        raise UnsafeBrowserURL(msg)
    if parts.username is not None or parts.password is not None:
        msg = (
            "Refusing to open an authorization URL with user information ('user@host'), "
            "which disguises the real host. Check the authorization server's metadata."
        )
        raise UnsafeBrowserURL(msg)
    if scheme == "http" and not is_loopback_host(host):
        msg = (
            f"Refusing to open http://{host}/...: an authorization page must be served over "
            f"https (RFC 6749 §3.1); plain http is allowed only to a loopback address."
        )
        raise UnsafeBrowserURL(msg)
    return url


async def launch_browser(
    url: str,
    open_browser: BrowserOpener | None = None,
    *,
    task_group: TaskGroup | None = None,
    browser_command: str | None = None,
) -> bool:
    """Check ``url`` and open it with ``open_browser``, or through a private redirect page.

    With no ``open_browser``, the URL is written to a 0600 page that redirects to it, and
    :func:`webbrowser.open` (``$BROWSER``, ``xdg-open``, ``open``, ``start``) is given the
    page's ``file://`` URL, in anyio's worker thread (it may block while it starts a
    process). The page is removed when ``task_group`` ends or after :data:`PAGE_LIFETIME`
    (without a task group: at the next launch after its lifetime). Returns False when the
    launcher reported failure; the caller should then show the URL for the user to copy.
    """
    check_browser_url(url)
    opened: object
    if open_browser is not None:
        result = open_browser(url)
        opened = (await result) if inspect.isawaitable(result) else result
    else:
        page = await anyio.to_thread.run_sync(_write_page, url)
        try:
            opened = await anyio.to_thread.run_sync(_open_page, page, browser_command)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_remove_page, page)
            raise
        if opened is False:
            await anyio.to_thread.run_sync(_remove_page, page)
        elif task_group is not None:
            task_group.start_soon(_expire, page)
    if opened is False:
        logger.info("the browser launcher reported that it could not open the URL")
        return False
    return True


async def _expire(page: Path) -> None:
    """Remove ``page`` after its lifetime, or as soon as its task group is cancelled."""
    try:
        await anyio.sleep(PAGE_LIFETIME)
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(_remove_page, page)


def _open_page(page: Path, browser_command: str | None) -> bool:
    """Hand ``page`` to the launcher chosen as the module docstring says (Which launcher)."""
    argv = _launcher(page, browser_command)
    if argv is None:
        return webbrowser.open(page.as_uri())
    import subprocess

    try:
        # Detached: a browser may run for hours; it must not be this process's child to reap.
        subprocess.Popen(  # noqa: S603  (argv from the user's own setting or a fixed name)
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
    except OSError as exc:
        logger.warning("could not start the browser command %r: %s", argv[0], exc.strerror)
        return False
    logger.info("asked %s to open the sign-in page", argv[0])
    return True


def _launcher(page: Path, browser_command: str | None) -> list[str] | None:
    """The argv to start, or None for :func:`webbrowser.open`."""
    import shlex
    import shutil

    if browser_command is not None:
        return [*shlex.split(browser_command), page.as_uri()]
    if os.environ.get("BROWSER") or not in_wsl():
        return None
    wslview = shutil.which("wslview")
    if wslview is not None:
        return [wslview, str(page)]
    explorer = shutil.which("explorer.exe")
    wslpath = shutil.which("wslpath")
    if explorer is not None and wslpath is not None:
        import subprocess

        try:
            windows = subprocess.run(  # noqa: S603  (fixed program, our own path)
                [wslpath, "-w", str(page)], capture_output=True, text=True, timeout=5, check=True
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError) as exc:
            logger.info("wslpath could not translate the page's path: %s", exc)
            return None
        return [explorer, windows]
    return None


#: Where the kernel names its build; WSL kernels say "microsoft" there.
PROC_VERSION = Path("/proc/version")


def in_wsl() -> bool:
    """Running in the Windows Subsystem for Linux (where ``webbrowser`` finds no browser)."""
    if not sys.platform.startswith("linux"):
        return False
    if os.environ.get("WSL_DISTRO_NAME"):
        return True
    try:
        return "microsoft" in PROC_VERSION.read_text(encoding="ascii", errors="replace").lower()
    except OSError:
        return False


def redirect_page(url: str) -> bytes:
    """The page that sends the browser on to ``url``: escaped, no script, no referrer."""
    from html import escape

    target = escape(url, quote=True)
    host = escape(urlsplit(url).hostname or "", quote=True)
    # The refresh syntax is "0;url=" and the URL unquoted (it starts with "http"), so no
    # quote inside the URL can end it early (HTML, "shared declarative refresh steps").
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        "<meta http-equiv=Content-Security-Policy content=\"default-src 'none'\">"
        "<meta name=referrer content=no-referrer>"
        f'<meta http-equiv=refresh content="0;url={target}">'
        "<title>Signing in</title></head><body>"
        f"<p>Opening the sign-in page of {host}. If nothing happens, "
        f'<a href="{target}" rel=noreferrer>continue to sign in</a>.</p>'
        "</body></html>"
    ).encode()


def _page_parent() -> Path:
    """Where redirect pages go: see the module docstring (Where)."""
    if sys.platform.startswith("linux"):
        try:
            downloads = Path(platformdirs.user_downloads_dir())
            info = downloads.stat()
        except OSError:
            pass
        else:
            if stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid():
                return downloads
    return Path(tempfile.gettempdir())


def _write_page(url: str) -> Path:
    """Write the redirect page for ``url`` in a new 0700 directory; return its path."""
    parent = _page_parent()
    _sweep(parent)
    directory = Path(tempfile.mkdtemp(prefix=_PAGE_PREFIX, dir=parent))  # 0700, ours alone
    page = directory / _PAGE_NAME
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(page, flags, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(redirect_page(url))
    except BaseException:
        _remove_page(page)
        raise
    return page


def _remove_page(page: Path) -> None:
    for remove in (page.unlink, page.parent.rmdir):
        try:
            remove()
        except FileNotFoundError:
            pass
        except OSError as exc:  # something else in there, or gone read-only: leave it
            logger.debug("could not remove the sign-in redirect page: %s", exc)
            return


def _sweep(parent: Path) -> None:
    """Remove redirect pages older than their lifetime that a killed process left behind."""
    cutoff = time.time() - PAGE_LIFETIME
    try:
        with os.scandir(parent) as entries:
            stale = []
            for count, entry in enumerate(entries):
                if count >= _SWEEP_LIMIT:
                    break
                if not entry.name.startswith(_PAGE_PREFIX):
                    continue
                info = entry.stat(follow_symlinks=False)
                mine = not hasattr(os, "getuid") or info.st_uid == os.getuid()
                if stat.S_ISDIR(info.st_mode) and mine and info.st_mtime < cutoff:
                    stale.append(Path(entry.path) / _PAGE_NAME)
    except OSError as exc:
        logger.debug("could not look for stale sign-in redirect pages: %s", exc)
        return
    for page in stale:
        _remove_page(page)
