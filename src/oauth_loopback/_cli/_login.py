"""``oauth-loopback login`` (and what ``demo`` shares with it): a real login from the terminal.

The token goes to stdout as JSON (``--json``) or to a file written atomically with mode 0600
(``--output``); every failure is one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from .._config import LEGACY_CALLBACK_PORT, CallbackConfig
from .._errors import OAuthLoopbackError
from .._receiver._tasks import background
from ._messages import fail

if TYPE_CHECKING:
    from .._login._browser import BrowserOpener
    from .._login._token import Token

__all__ = ["check_output", "describe_token", "login", "read_metadata", "status_line"]


def _redact(secret: object) -> str:
    """The first 4 characters of a long secret and an ellipsis; nothing of a short one."""
    text = str(secret)
    return f"{text[:4]}…" if len(text) >= 16 else "…"


def describe_token(token: Token) -> str:
    parts = [f"{token.token_type} token"]
    if token.expires_in is not None:
        parts.append(f"expires in {token.expires_in} s")
    if token.scope:
        parts.append(f"scope {token.scope!r}")
    parts.append(f"access token {_redact(token.access_token)}")
    if token.refresh_token:
        parts.append(f"refresh token {_redact(token.refresh_token)}")
    return ", ".join(parts)


def _login_config(args: argparse.Namespace) -> CallbackConfig:
    public = getattr(args, "public_redirect_uri", None)
    if args.legacy_port:
        return CallbackConfig(
            port=LEGACY_CALLBACK_PORT, app_name="oauth-loopback", public_redirect_uri=public
        )
    if args.redirect_uri is not None:
        return CallbackConfig(
            redirect_uri=args.redirect_uri, app_name="oauth-loopback", public_redirect_uri=public
        )
    return CallbackConfig(port=args.port, app_name="oauth-loopback", public_redirect_uri=public)


def _write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically, readable by the owner only (mode 0600).

    A temporary file in the same directory (created 0600 by mkstemp) is written, flushed to
    disk and renamed over ``path``: readers see the old file or the new one, never half of
    one, and the token is never readable by others, even for a moment.
    """
    directory = path.parent if str(path.parent) else Path(".")
    fd, temp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.chmod(temp, 0o600)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


async def status_line(opened: anyio.Event, done: anyio.Event, seconds: float | None) -> None:
    """While the browser is out: one live stderr line with the time left and how to cancel."""
    await opened.wait()
    end = anyio.current_time() + (math.inf if seconds is None else seconds)
    try:
        while not done.is_set():
            left = end - anyio.current_time()
            remaining = "" if math.isinf(left) else f" {int(left) // 60}:{int(left) % 60:02d} left,"
            sys.stderr.write(
                f"\r\x1b[2KWaiting for you to finish signing in in the browser…{remaining} "
                f"Ctrl-C to cancel (if the browser shows an error, cancel and check --client-id)"
            )
            sys.stderr.flush()
            with anyio.move_on_after(1):
                await done.wait()
    finally:
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()


def check_output(output: str | None) -> str | None:
    """Why ``--output`` cannot be written, checked before the login starts; None if it can."""
    if output is None:
        return None
    path = Path(output)
    directory = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        return f"--output {output} is a directory; give a file name, such as {path / 'token.json'}."
    if not directory.is_dir():
        return (
            f"--output {output}: the directory {directory} does not exist. Create it, or "
            f"choose another path."
        )
    if not os.access(directory, os.W_OK | os.X_OK):
        return f"--output {output}: you cannot write in {directory}. Choose another path."
    return None


def read_metadata(path: str | None) -> dict[str, object] | None:
    """The ``--metadata FILE`` document (RFC 8414 §2 fields), or raise a one-line OSError."""
    if path is None:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        msg = f"--metadata {path}: cannot read it ({exc})."
        raise OSError(msg) from exc
    try:
        document = json.loads(text)
    except ValueError as exc:
        msg = f"--metadata {path} is not JSON ({exc}). Give the server's metadata document."
        raise OSError(msg) from exc
    if not isinstance(document, dict):
        msg = f"--metadata {path} must hold a JSON object (the server's metadata), not a list or value."
        raise OSError(msg)
    return document


def _opener_with_hint(live: bool, browser_command: str | None = None) -> BrowserOpener:
    """The default browser launch, telling the user what to do when no browser opened."""
    from .._login._browser import launch_browser

    async def open_browser(url: str) -> bool:
        opened = await launch_browser(url, browser_command=browser_command)
        if not opened:
            print(
                "No browser could be opened on this machine. Open the address above in any "
                "browser that can reach this computer, or press Ctrl-C and run again with "
                "--no-browser to paste the address you are sent to.",
                file=sys.stderr,
            )
        return True  # the URL was shown: keep waiting, the user can open it by hand

    return open_browser


async def login(args: argparse.Namespace, *, open_browser: BrowserOpener | None = None) -> int:
    """``oauth-loopback login``; ``open_browser`` lets tests play the browser in-process."""
    try:
        return await _login(args, open_browser)
    except (OAuthLoopbackError, OSError) as exc:
        return fail(exc)


async def _login(args: argparse.Namespace, open_browser: BrowserOpener | None) -> int:
    from .._login._authorize import authorize

    client_secret = args.client_secret or os.environ.get("OAUTH_LOOPBACK_CLIENT_SECRET") or None
    if client_secret is not None and args.client_id is None:
        print(
            "error: --client-secret needs --client-id (the client it belongs to)", file=sys.stderr
        )
        return 2
    if args.issuer is None:
        if args.resource is None:
            print(
                "error: give ISSUER, or --resource URL to find its server (RFC 9728)",
                file=sys.stderr,
            )
            return 2
        from .._login._resource import discover_issuer

        found, selected = await discover_issuer(args.resource)
        args.issuer = found.issuer
        if args.scope is None:
            args.scope = selected
        print(f"The resource is guarded by {found.issuer} (from {found.url}).", file=sys.stderr)
    problem = check_output(args.output)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 1
    metadata = read_metadata(args.metadata)
    live = sys.stderr.isatty() and not args.no_browser
    if open_browser is None and not args.no_browser:
        open_browser = _opener_with_hint(live, args.browser_command)
    opened, done = anyio.Event(), anyio.Event()

    def on_step(name: str, detail: str) -> None:
        if name == "redirect":
            opened.set()
        elif name == "callback":
            done.set()

    def show_url(url: str) -> None:
        print(
            f"Opening your browser to sign in. If it does not open, visit:\n\n  {url}\n",
            file=sys.stderr,
        )

    config = _login_config(args)
    async with background() as tg:
        if live:
            tg.start_soon(status_line, opened, done, args.timeout or config.timeout)
        try:
            token = await authorize(
                args.issuer,
                client_id=args.client_id,
                client_secret=client_secret,
                scope=args.scope,
                resource=args.resource,
                config=config,
                open_browser=open_browser,
                timeout=args.timeout,
                paste=args.no_browser,
                # --no-browser: the paste prompt shows the URL itself.
                show_url=None if args.no_browser else show_url,
                on_step=on_step,
                metadata=metadata,
                # The token is handed to other programs (--json, --output), which would need
                # the DPoP key too: a bearer token is what they can use (README, Decisions).
                dpop=False,
            )
        finally:
            done.set()
    if not args.no_store:
        await _save(args, token)
    document = json.dumps(dict(token), indent=2, sort_keys=True) + "\n"
    if args.output is not None:
        try:
            _write_private(Path(args.output), document)
        except OSError as exc:
            print(
                f"error: could not write the token to {args.output}: {exc.strerror or exc}",
                file=sys.stderr,
            )
            return 1
        print(f"Logged in. Token written to {args.output} (mode 0600).", file=sys.stderr)
    if args.json:
        sys.stdout.write(document)
    elif args.output is None:
        print(f"Logged in: {describe_token(token)}.")
        print("Use --json or --output FILE to get the token itself.", file=sys.stderr)
    return 0


async def _save(args: argparse.Namespace, token: Token) -> None:
    """Keep the login in the token store, so later runs need no browser (``--no-store``: not)."""
    from .._store._records import StoredLogin, StoredTokens
    from ._stored import store_for

    store = store_for(args)
    tokens = StoredTokens.from_response(token, received_at=token.received_at)
    if tokens.scope is None and args.scope:
        tokens = dataclasses.replace(tokens, scope=args.scope)  # RFC 6749 §5.1: as requested
    login = StoredLogin(
        issuer=args.issuer, resource=args.resource, client=token.client, tokens=tokens
    )
    await store.save(login)
    print(
        f"Saved the login in {store.path} (mode 0600): 'oauth-loopback token {args.issuer}' "
        f"prints a valid token from now on.",
        file=sys.stderr,
    )
