"""``oauth-loopback login`` (and what ``demo`` shares with it): a real login from the terminal.

The token goes to stdout as JSON (``--json``) or to a file written atomically with mode 0600
(``--output``); every failure is one ``error: ...`` line.
"""

from __future__ import annotations

import argparse
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

if TYPE_CHECKING:
    from .._login._browser import BrowserOpener
    from .._login._token import Token

__all__ = ["describe_token", "login", "status_line"]


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
    if args.legacy_port:
        return CallbackConfig(port=LEGACY_CALLBACK_PORT, app_name="oauth-loopback")
    if args.redirect_uri is not None:
        return CallbackConfig(redirect_uri=args.redirect_uri, app_name="oauth-loopback")
    return CallbackConfig(port=args.port, app_name="oauth-loopback")


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
                f"Ctrl-C to cancel"
            )
            sys.stderr.flush()
            with anyio.move_on_after(1):
                await done.wait()
    finally:
        sys.stderr.write("\r\x1b[2K")
        sys.stderr.flush()


async def login(args: argparse.Namespace, *, open_browser: BrowserOpener | None = None) -> int:
    """``oauth-loopback login``; ``open_browser`` lets tests play the browser in-process."""
    from .._login._authorize import authorize

    client_secret = args.client_secret or os.environ.get("OAUTH_LOOPBACK_CLIENT_SECRET") or None
    if client_secret is not None and args.client_id is None:
        print(
            "error: --client-secret needs --client-id (the client it belongs to)", file=sys.stderr
        )
        return 2
    live = sys.stderr.isatty() and not args.no_browser
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

    token: Token | None = None
    failure: OAuthLoopbackError | None = None
    try:
        config = _login_config(args)
        async with anyio.create_task_group() as tg:
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
                )
            except OAuthLoopbackError as exc:
                failure = exc  # reported below, outside the task group
            finally:
                done.set()
    except OAuthLoopbackError as exc:
        failure = exc
    if failure is not None:
        print(f"error: {failure}", file=sys.stderr)
        return 1
    assert token is not None  # noqa: S101  (authorize returned)
    document = json.dumps(dict(token), indent=2, sort_keys=True) + "\n"
    if args.output is not None:
        try:
            _write_private(Path(args.output), document)
        except OSError as exc:
            print(f"error: could not write the token to {args.output}: {exc}", file=sys.stderr)
            return 1
        print(f"Logged in. Token written to {args.output} (mode 0600).", file=sys.stderr)
    if args.json:
        sys.stdout.write(document)
    elif args.output is None:
        print(f"Logged in: {describe_token(token)}.")
        print("Use --json or --output FILE to get the token itself.", file=sys.stderr)
    return 0
