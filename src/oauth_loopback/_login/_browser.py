"""Open the authorization URL in the user's browser, after checking it is safe to hand over.

A browser launcher (``webbrowser``, ``xdg-open``, ``open``, ``start``) will happily run
``file:``, ``javascript:`` or custom-scheme URLs, and on some platforms pass arguments to a
shell. An authorization URL comes from server metadata, which an attacker may control, so we
refuse anything but ``https://`` or ``http://`` to a loopback address before launching.
"""

from __future__ import annotations

import inspect
import logging
import webbrowser
from collections.abc import Awaitable, Callable
from urllib.parse import urlsplit

import anyio.to_thread

from .._errors import UnsafeBrowserURL
from .._loopback import is_loopback_host

__all__ = ["BrowserOpener", "UnsafeBrowserURL", "check_browser_url", "launch_browser"]

logger = logging.getLogger("oauth_loopback.browser")

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


async def launch_browser(url: str, open_browser: BrowserOpener | None = None) -> bool:
    """Check ``url`` and open it with ``open_browser`` (default: :func:`webbrowser.open`).

    The default launcher may block while it starts a process, so it runs in anyio's worker
    thread, keeping the event loop free. Returns False when the launcher reported failure;
    the caller should then show the URL for the user to copy.
    """
    check_browser_url(url)
    opened: object
    if open_browser is None:
        opened = await anyio.to_thread.run_sync(webbrowser.open, url)
    else:
        result = open_browser(url)
        opened = (await result) if inspect.isawaitable(result) else result
    if opened is False:
        logger.info("the browser launcher reported that it could not open the URL")
        return False
    return True
