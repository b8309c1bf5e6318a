"""The ``oauth-loopback`` command (also ``python -m oauth_loopback``).

Only this module prints. Sub-commands:

* ``doctor [--port N]``: bind ephemeral receivers on 127.0.0.1 (and ::1 when the machine has
  it), complete one callback round trip through a real local HTTP request, time it, and
  check who holds the legacy port 19876 (or ``--port``). Exit status 0 means healthy.
* ``demo``: start the embedded authorization server (:mod:`oauth_loopback.testing`) and run a
  complete :func:`authorize` against it with a headless browser stand-in, printing each step
  with its time and the token redacted. Exit status 0 means the whole login worked.
* ``login ISSUER [...]``: a real login through the user's browser (or, with ``--no-browser``,
  by pasting the address the browser was redirected to); the token goes to stdout as JSON
  (``--json``) or to a file written atomically with mode 0600 (``--output``).
* ``cimd write|check``: the app's client ID metadata document (:mod:`._cimd`).

The login commands import authlib lazily, so ``oauth-loopback --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import h11

from .._config import LEGACY_CALLBACK_PORT, CallbackConfig
from .._errors import CallbackPortInUse, OAuthLoopbackError
from .._receiver._receiver import open_receiver
from . import _cimd

if TYPE_CHECKING:
    from .._login._browser import BrowserOpener
    from .._login._token import Token

__all__ = ["main"]

_BACKENDS = ("asyncio", "trio")


@dataclass
class _Check:
    ok: bool
    text: str
    warn: bool = False

    def line(self) -> str:
        mark = "ok  " if self.ok else "FAIL"
        if self.ok and self.warn:
            mark = "warn"
        return f"  [{mark}] {self.text}"


async def http_get(host: str, port: int, target: str, *, host_header: str) -> tuple[int, bytes]:
    """One GET over a fresh loopback connection with h11; returns (status, body)."""
    connect_host = host.strip("[]")
    async with await anyio.connect_tcp(connect_host, port) as stream:
        conn = h11.Connection(h11.CLIENT)
        request = h11.Request(
            method="GET",
            target=target,
            headers=[
                ("Host", host_header),
                ("Connection", "close"),
                ("User-Agent", "oauth-loopback-doctor"),
            ],
        )
        await stream.send((conn.send(request) or b"") + (conn.send(h11.EndOfMessage()) or b""))
        status = 0
        body = b""
        with anyio.fail_after(10):
            while True:
                event = conn.next_event()
                if event is h11.NEED_DATA:
                    try:
                        conn.receive_data(await stream.receive())
                    except anyio.EndOfStream:
                        conn.receive_data(b"")
                elif isinstance(event, h11.Response):
                    status = event.status_code
                elif isinstance(event, h11.Data):
                    body += event.data
                elif isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                    return status, body


async def _round_trip(host: str) -> list[_Check]:
    label = "127.0.0.1" if host == "127.0.0.1" else "[::1]"
    started = time.perf_counter()
    try:
        async with open_receiver(CallbackConfig(host=host, app_name="oauth-loopback doctor")) as rx:
            bound = time.perf_counter() - started
            checks = [
                _Check(
                    True,
                    f"{label}: bound port {rx.port} in {bound * 1e3:.2f} ms, "
                    f"redirect URI {rx.redirect_uri}",
                )
            ]
            pending = rx.expect()
            woke_at = 0.0

            async def waiter() -> None:
                nonlocal woke_at
                response = await pending.wait(timeout=10)
                woke_at = time.perf_counter()
                if response.code != "doctor-check":
                    msg = "the receiver returned a different code than was sent"
                    raise RuntimeError(msg)

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.lowlevel.checkpoint()
                sent = time.perf_counter()
                status, _ = await http_get(
                    label,
                    rx.port,
                    f"{rx.config.path}?code=doctor-check&state={pending.state}",
                    host_header=f"{label}:{rx.port}",
                )
                done = time.perf_counter()
            if status != 200:
                checks.append(
                    _Check(False, f"{label}: callback answered HTTP {status}, expected 200")
                )
            else:
                checks.append(
                    _Check(
                        True,
                        f"{label}: callback round trip in {(done - sent) * 1e3:.2f} ms "
                        f"(wait() woke after {(woke_at - sent) * 1e3:.2f} ms)",
                    )
                )
            return checks
    except OSError as exc:
        if host == "::1":
            return [
                _Check(
                    True,
                    f"[::1]: no IPv6 loopback on this machine ({exc.strerror}); "
                    "the default 127.0.0.1 does not need it",
                    warn=True,
                )
            ]
        return [_Check(False, f"{label}: could not bind a loopback port: {exc}")]


async def _port_check(port: int, explicit: bool) -> _Check:
    try:
        async with open_receiver(CallbackConfig(port=port)):
            pass
    except CallbackPortInUse as exc:
        text = f"port {port}: {exc}"
        # A busy legacy port is only a problem for clients that pin it; a port the user
        # asked about explicitly is the answer to their question.
        return _Check(not explicit, text, warn=True)
    except OSError as exc:
        return _Check(not explicit, f"port {port}: cannot bind ({exc})", warn=True)
    hint = (
        ""
        if explicit
        else " (only used when a client asks for it: callbackPort / CallbackConfig.legacy())"
    )
    return _Check(True, f"port {port} on 127.0.0.1 is free{hint}")


async def _doctor(port: int | None, backend: str) -> int:
    print(
        f"oauth-loopback doctor: Python {platform.python_version()}, anyio {_version('anyio')}, "
        f"backend {backend}"
    )
    checks = await _round_trip("127.0.0.1")
    checks += await _round_trip("::1")
    checks.append(await _port_check(port or LEGACY_CALLBACK_PORT, explicit=port is not None))
    for check in checks:
        print(check.line())
    healthy = all(c.ok for c in checks)
    print("healthy" if healthy else "NOT healthy: see the FAIL lines above")
    return 0 if healthy else 1


# --- demo and login ---------------------------------------------------------------------


def _redact(secret: object) -> str:
    """The first 4 characters of a long secret and an ellipsis; nothing of a short one."""
    text = str(secret)
    return f"{text[:4]}…" if len(text) >= 16 else "…"


def _describe_token(token: Token) -> str:
    parts = [f"{token.token_type} token"]
    if token.expires_in is not None:
        parts.append(f"expires in {token.expires_in} s")
    if token.scope:
        parts.append(f"scope {token.scope!r}")
    parts.append(f"access token {_redact(token.access_token)}")
    if token.refresh_token:
        parts.append(f"refresh token {_redact(token.refresh_token)}")
    return ", ".join(parts)


async def _demo(backend: str) -> int:
    from .. import testing
    from .._login._authorize import authorize

    print(
        f"oauth-loopback demo (backend {backend}): a complete login against an embedded "
        f"authorization server, with a headless browser stand-in"
    )
    try:
        async with testing.AuthorizationServer() as server:
            print(
                f"  server        {server.issuer} (embedded: PKCE S256 required, dynamic "
                f"registration, RFC 9207 iss)"
            )
            started = last = time.perf_counter()

            def on_step(name: str, detail: str) -> None:
                nonlocal last
                now = time.perf_counter()
                print(f"  {name:<13}{(now - last) * 1e3:8.2f} ms  {detail}")
                last = now

            token = await authorize(
                server.issuer,
                config=CallbackConfig(app_name="oauth-loopback demo"),
                open_browser=testing.follow_redirects,
                on_step=on_step,
                timeout=30,
            )
            total = time.perf_counter() - started
    except OAuthLoopbackError as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"  result                   {_describe_token(token)}")
    print(f"  total       {total * 1e3:8.2f} ms")
    print("ok: the login completed (run 'oauth-loopback login ISSUER' for a real one)")
    return 0


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


async def _status_line(opened: anyio.Event, done: anyio.Event, seconds: float | None) -> None:
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


async def _login(args: argparse.Namespace, *, open_browser: BrowserOpener | None = None) -> int:
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
                tg.start_soon(_status_line, opened, done, args.timeout or config.timeout)
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
        print(f"Logged in: {_describe_token(token)}.")
        print("Use --json or --output FILE to get the token itself.", file=sys.stderr)
    return 0


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        msg = f"must be a positive number of seconds, not {text!r}"
        raise argparse.ArgumentTypeError(msg)
    return value


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="oauth-loopback",
        description="Receive OAuth 2.0 authorization responses on a loopback redirect URI.",
    )
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {_version('oauth-loopback')}"
    )
    parser.add_argument(
        "--backend",
        choices=_BACKENDS,
        default="asyncio",
        help="event loop to run on (trio needs: pip install 'oauth-loopback[trio]')",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    doctor = sub.add_parser(
        "doctor",
        help="check that loopback callbacks work here, and who holds the legacy port",
        description="Bind ephemeral receivers, complete a callback round trip, and check "
        f"whether port {LEGACY_CALLBACK_PORT} (or --port) is free. Exit status 0 means healthy.",
    )
    doctor.add_argument(
        "--port",
        type=int,
        default=None,
        help=f"check this fixed port instead of the legacy {LEGACY_CALLBACK_PORT}; "
        "exit status 1 if it is busy",
    )
    sub.add_parser(
        "demo",
        help="run a complete login against an embedded authorization server",
        description="Start an embedded OAuth 2.0 authorization server on 127.0.0.1 and log in "
        "to it with authorize() and a headless browser stand-in, printing each step (bind, "
        "discovery, registration, redirect, callback, token) with its time. Nothing external "
        "is contacted. Exit status 0 means the whole login worked.",
    )
    login = sub.add_parser(
        "login",
        help="log in to an authorization server through your browser",
        description="Log in to ISSUER: discover its metadata, register a client (unless "
        "--client-id), open the browser with PKCE, receive the callback on a loopback port "
        "and exchange the code. The token goes to stdout with --json, or to --output FILE.",
    )
    login.add_argument("issuer", metavar="ISSUER", help="the authorization server's issuer URL")
    login.add_argument(
        "--client-id",
        metavar="ID",
        help="a pre-registered client (default: register one dynamically, RFC 7591)",
    )
    login.add_argument(
        "--client-secret",
        metavar="S",
        help="the client's secret, for a "
        "confidential client; other local users can see command lines, so "
        "prefer the OAUTH_LOOPBACK_CLIENT_SECRET environment variable",
    )
    login.add_argument("--scope", metavar="S", help="space-separated scopes to ask for")
    login.add_argument(
        "--resource", metavar="R", help="RFC 8707 resource indicator (for MCP: the server's URL)"
    )
    where = login.add_mutually_exclusive_group()
    where.add_argument(
        "--port",
        type=int,
        metavar="N",
        help="listen on this fixed port (default: a free port the OS picks)",
    )
    where.add_argument(
        "--legacy-port",
        action="store_true",
        help=f"listen on the legacy port "
        f"{LEGACY_CALLBACK_PORT}, for servers whose registration pins it",
    )
    where.add_argument(
        "--redirect-uri",
        metavar="URI",
        help="listen on this loopback redirect URI, e.g. http://127.0.0.1:8765/callback",
    )
    login.add_argument(
        "--no-browser",
        action="store_true",
        help="do not open a browser: "
        "print the URL and ask for the address the browser was redirected to "
        "(SSH, containers); the loopback callback still works if it arrives",
    )
    login.add_argument(
        "--json", action="store_true", help="print the token response as JSON on stdout"
    )
    login.add_argument(
        "--output",
        metavar="FILE",
        help="write the token response as JSON to "
        "FILE, atomically and readable by you only (mode 0600)",
    )
    login.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="give up after this long without a callback (default 300)",
    )
    _cimd.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``oauth-loopback`` console script."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.backend == "trio":
        import importlib.util

        if importlib.util.find_spec("trio") is None:
            print("--backend trio needs trio: pip install 'oauth-loopback[trio]'", file=sys.stderr)
            return 2
    try:
        if args.command == "doctor":
            if args.port is not None and not 0 < args.port < 65536:
                parser.error(f"--port must be from 1 to 65535, not {args.port}")
            return anyio.run(_doctor, args.port, args.backend, backend=args.backend)
        if args.command == "demo":
            return anyio.run(_demo, args.backend, backend=args.backend)
        if args.command == "login":
            return anyio.run(_login, args, backend=args.backend)
        if args.command == "cimd":
            return _cimd.run(args, parser)
    except OAuthLoopbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2  # pragma: no cover  (parser.error exits)
