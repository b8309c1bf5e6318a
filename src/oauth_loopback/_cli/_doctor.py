"""``oauth-loopback doctor``: bind, round-trip a real callback, time it, check the fixed port."""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import anyio
import h11

from .._config import LEGACY_CALLBACK_PORT, CallbackConfig
from .._errors import CallbackPortInUse
from .._receiver._portowner import printable
from .._receiver._receiver import open_receiver
from . import version

if TYPE_CHECKING:
    pass

__all__ = ["doctor"]


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
        # The message names the holder's command line, which another user may have chosen:
        # never let its control characters reach the terminal (printable() escapes them).
        text = f"port {port}: {printable(str(exc))}"
        # A busy legacy port is only a problem for clients that pin it; a port the user
        # asked about explicitly is the answer to their question.
        return _Check(not explicit, text, warn=True)
    except OSError as exc:
        return _Check(not explicit, f"port {port}: cannot bind ({printable(str(exc))})", warn=True)
    hint = (
        ""
        if explicit
        else " (only used when a client asks for it: callbackPort / CallbackConfig.legacy())"
    )
    return _Check(True, f"port {port} on 127.0.0.1 is free{hint}")


async def doctor(port: int | None, backend: str) -> int:
    print(
        f"oauth-loopback doctor: Python {platform.python_version()}, anyio {version('anyio')}, "
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
