"""The ``oauth-loopback`` command (also ``python -m oauth_loopback``).

Only this module prints. Sub-commands:

* ``doctor [--port N]``: bind ephemeral receivers on 127.0.0.1 (and ::1 when the machine has
  it), complete one callback round trip through a real local HTTP request, time it, and
  check who holds the legacy port 19876 (or ``--port``). Exit status 0 means healthy.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass

import anyio
import h11

from ._config import LEGACY_CALLBACK_PORT, CallbackConfig
from ._errors import CallbackPortInUse, OAuthLoopbackError
from ._server import open_receiver

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
            headers=[("Host", host_header), ("Connection", "close"), ("User-Agent", "oauth-loopback-doctor")],
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
                _Check(True, f"{label}: bound port {rx.port} in {bound * 1e3:.2f} ms, "
                             f"redirect URI {rx.redirect_uri}")
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
                    label, rx.port, f"{rx.config.path}?code=doctor-check&state={pending.state}",
                    host_header=f"{label}:{rx.port}",
                )
                done = time.perf_counter()
            if status != 200:
                checks.append(_Check(False, f"{label}: callback answered HTTP {status}, expected 200"))
            else:
                checks.append(_Check(
                    True,
                    f"{label}: callback round trip in {(done - sent) * 1e3:.2f} ms "
                    f"(wait() woke after {(woke_at - sent) * 1e3:.2f} ms)",
                ))
            return checks
    except OSError as exc:
        if host == "::1":
            return [_Check(True, f"[::1]: no IPv6 loopback on this machine ({exc.strerror}); "
                                 "the default 127.0.0.1 does not need it", warn=True)]
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
        "" if explicit else
        " (only used when a client asks for it: callbackPort / CallbackConfig.legacy())"
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
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version('oauth-loopback')}")
    parser.add_argument(
        "--backend", choices=_BACKENDS, default="asyncio",
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
        "--port", type=int, default=None,
        help=f"check this fixed port instead of the legacy {LEGACY_CALLBACK_PORT}; "
        "exit status 1 if it is busy",
    )
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
    except OAuthLoopbackError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    parser.error(f"unknown command {args.command!r}")
    return 2  # pragma: no cover  (parser.error exits)
