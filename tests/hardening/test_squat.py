"""Port squatting and localhost mode, on asyncio and trio, with real squatter processes.

A squatter is another process listening on the fixed callback port before (or after) us. What
is true on Linux, and what each test proves:

=====================  ====================================================================
squatter holds          result for a fixed-port receiver on 127.0.0.1
=====================  ====================================================================
127.0.0.1:P             loud CallbackPortInUse naming the holder's pid and command
0.0.0.0:P               loud CallbackPortInUse (the wildcard covers 127.0.0.1)
[::]:P (dual-stack)     loud CallbackPortInUse (Linux's default v6 wildcard covers IPv4)
[::]:P (IPV6_V6ONLY)    we bind; 127.0.0.1:P reaches us; the browser never asks IPv6
::1:P                   we bind; 127.0.0.1:P reaches us; the redirect URI says 127.0.0.1
=====================  ====================================================================

In ``localhost`` mode the browser may try ::1 first, so a squatter on ::1 (or a dual-stack
wildcard) is loud instead, and once we listen nobody can take either family's port.
"""

from __future__ import annotations

import errno
import logging
import random
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import anyio
import pytest

import oauth_loopback as ol
from oauth_loopback._receiver import _binding
from tests import _http

pytestmark = pytest.mark.anyio

SQUATTER = """\
import socket, sys
family, host, v6only, port = sys.argv[1:5]
fam = socket.AF_INET6 if family == "6" else socket.AF_INET
s = socket.socket(fam, socket.SOCK_STREAM)
if fam == socket.AF_INET6:
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, int(v6only))
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((host, int(port)))
s.listen(8)
print(s.getsockname()[1], flush=True)
sys.stdin.read()  # hold the port until the test closes our stdin
"""


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
    except OSError:
        return False
    return True


needs_ipv6 = pytest.mark.skipif(not _has_ipv6_loopback(), reason="this machine has no ::1")


def _fixed_port() -> int:
    """A port outside the kernel's ephemeral range, free on 127.0.0.1, ::1 and the wildcards.

    Squatting tests need a *fixed* port. One the kernel handed out with bind(port=0) on IPv6
    may meanwhile be the source port of some unrelated IPv4 connection (other tests run in
    parallel), which would make our 127.0.0.1 bind fail for a reason the test is not about.
    """
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as fh:
            low = int(fh.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(10_000, max(low, 10_001))
        try:
            with socket.socket() as v4:
                v4.bind(("0.0.0.0", port))
            if _has_ipv6_loopback():
                with socket.socket(socket.AF_INET6) as v6:
                    v6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    v6.bind(("::", port))
        except OSError:
            continue
        return port
    pytest.skip("found no free fixed port below the ephemeral range")


Squat = Callable[..., "tuple[subprocess.Popen[str], int]"]


@pytest.fixture
def squat(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Squat]:
    """Start squatter processes: squat(family, host, v6only=0) -> (process, its fixed port)."""
    script = tmp_path_factory.mktemp("squat") / "squatter.py"
    script.write_text(SQUATTER)
    procs: list[subprocess.Popen[str]] = []

    def start(family: str, host: str, v6only: int = 0) -> tuple[subprocess.Popen[str], int]:
        port = _fixed_port()
        proc = subprocess.Popen(
            [sys.executable, str(script), family, host, str(v6only), str(port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the squatter is listening once it has printed
        assert line.strip().isdigit(), f"squatter failed to start: {line!r}"
        return proc, int(line)

    yield start
    for proc in procs:
        assert proc.stdin is not None
        assert proc.stdout is not None
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


async def _reaches_us(port: int, receiver: ol.CallbackReceiver) -> None:
    """A browser following the redirect URI lands on our receiver, which completes a login."""
    assert receiver.redirect_uri.startswith(f"http://127.0.0.1:{port}/")
    pending = receiver.expect()
    reply = await _http.get(port, f"/callback?state={pending.state}&code=ours")
    assert reply.status == 200
    assert (await pending.wait(5)).code == "ours"


@pytest.mark.parametrize(
    ("family", "host", "v6only", "shown"),
    [
        pytest.param("4", "127.0.0.1", 0, "127.0.0.1", id="v4-loopback"),
        pytest.param("4", "0.0.0.0", 0, "0.0.0.0", id="v4-wildcard"),
        pytest.param("6", "::", 0, "[::]", id="v6-wildcard-dual-stack", marks=needs_ipv6),
    ],
)
async def test_squatter_covering_our_address_is_loud(
    squat: Squat, family: str, host: str, v6only: int, shown: str
) -> None:
    """A squatter that would get the browser's request makes open_receiver raise, naming pid and command."""
    proc, port = squat(family, host, v6only)
    with anyio.fail_after(1):  # the contract: within a second, nothing retried elsewhere
        with pytest.raises(ol.CallbackPortInUse) as info:
            async with ol.open_receiver(ol.CallbackConfig(port=port)):
                pytest.fail("bound a port another process holds")
    exc = info.value
    assert exc.port == port
    assert exc.errno == errno.EADDRINUSE
    assert exc.holder is not None
    assert f"pid {proc.pid} " in exc.holder
    assert "squatter.py" in exc.holder  # the command line
    assert shown in exc.holder
    message = str(exc)
    for part in (str(port), "port=", "callbackPort", "redirect_uri="):
        assert part in message


@needs_ipv6
@pytest.mark.parametrize(
    ("host", "v6only"),
    [pytest.param("::1", 0, id="v6-loopback"), pytest.param("::", 1, id="v6-only-wildcard")],
)
async def test_ipv6_only_squatter_cannot_be_reached_by_the_browser(
    squat: Squat, host: str, v6only: int
) -> None:
    """An IPv6-only squatter does not block 127.0.0.1, and 127.0.0.1 (the redirect URI) reaches us."""
    _, port = squat("6", host, v6only)
    async with ol.open_receiver(ol.CallbackConfig(port=port)) as receiver:
        await _reaches_us(port, receiver)


@needs_ipv6
@pytest.mark.parametrize(
    ("family", "host", "v6only"),
    [
        pytest.param("6", "::1", 0, id="v6-loopback"),
        pytest.param("6", "::", 0, id="v6-wildcard-dual-stack"),
        pytest.param("6", "::", 1, id="v6-only-wildcard"),
    ],
)
async def test_localhost_mode_is_loud_about_any_ipv6_squatter(
    squat: Squat, family: str, host: str, v6only: int
) -> None:
    """localhost mode with a fixed port: a squatter on the IPv6 side is loud, never half-bound."""
    proc, port = squat(family, host, v6only)
    config = ol.CallbackConfig(host="localhost", port=port)
    with pytest.raises(ol.CallbackPortInUse) as info:
        async with ol.open_receiver(config):
            pytest.fail("bound a port another process holds")
    assert info.value.port == port
    assert info.value.holder is not None
    assert f"pid {proc.pid} " in info.value.holder
    if host == "::1" or v6only:  # (a dual-stack squatter holds 127.0.0.1:port itself)
        # Nothing of ours was left holding 127.0.0.1:port.
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", port))


def _try_bind(family: socket.AddressFamily, host: str, port: int, *, v6only: int = 0) -> int:
    """Bind as an aggressive squatter would (SO_REUSEADDR + SO_REUSEPORT); 0 or the errno."""
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, v6only)
        try:
            s.bind((host, port))
            s.listen(1)
        except OSError as exc:
            return exc.errno or -1
    return 0


@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
async def test_no_late_squatter_can_take_our_ipv4_port() -> None:
    """Once we listen on 127.0.0.1:P, no socket (even with SO_REUSEPORT) can bind 127.0.0.1 or 0.0.0.0:P."""
    async with ol.open_receiver() as receiver:
        port = receiver.port
        assert _try_bind(socket.AF_INET, "127.0.0.1", port) == errno.EADDRINUSE
        assert _try_bind(socket.AF_INET, "0.0.0.0", port) == errno.EADDRINUSE
        if _has_ipv6_loopback():
            assert _try_bind(socket.AF_INET6, "::", port, v6only=0) == errno.EADDRINUSE
        await _reaches_us(port, receiver)


@needs_ipv6
@pytest.mark.skipif(not hasattr(socket, "SO_REUSEPORT"), reason="no SO_REUSEPORT here")
async def test_localhost_mode_holds_both_families() -> None:
    """localhost mode: one port on 127.0.0.1 and ::1, both reach us, and neither can be taken after."""
    async with ol.open_receiver(ol.CallbackConfig(host="localhost")) as receiver:
        port = receiver.port
        assert receiver.redirect_uri == f"http://localhost:{port}/callback"
        for address in ("127.0.0.1", "::1"):
            pending = receiver.expect()
            reply = await _http.get(
                port,
                f"/callback?state={pending.state}&code=via-{address}",
                host=address,
                host_header=f"localhost:{port}",
            )
            assert reply.status == 200
            assert (await pending.wait(5)).code == f"via-{address}"
        assert _try_bind(socket.AF_INET, "127.0.0.1", port) == errno.EADDRINUSE
        assert _try_bind(socket.AF_INET6, "::1", port, v6only=1) == errno.EADDRINUSE
        assert _try_bind(socket.AF_INET6, "::", port, v6only=1) == errno.EADDRINUSE


@needs_ipv6
async def test_localhost_mode_retries_when_the_ipv6_side_is_taken(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ephemeral localhost mode: if another process holds ::1 on the offered port, it tries another."""
    real_listen = _binding._listen
    squatters: list[socket.socket] = []

    def listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
        if family == socket.AF_INET6 and len(squatters) < 2:
            # Take ::1 on the port the OS just gave us for 127.0.0.1, as a racing process would.
            squatter = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
            squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            squatter.bind(("::1", port))
            squatter.listen(1)
            squatters.append(squatter)
        return real_listen(family, host, port)

    monkeypatch.setattr(_binding, "_listen", listen)
    try:
        async with ol.open_receiver(ol.CallbackConfig(host="localhost")) as receiver:
            taken = {s.getsockname()[1] for s in squatters}
            assert len(taken) == 2
            assert receiver.port not in taken
            for address in ("127.0.0.1", "::1"):
                reply = await _http.get(receiver.port, "/", host=address)
                assert reply.status == 404  # our receiver answered on both families
    finally:
        for squatter in squatters:
            squatter.close()


async def test_localhost_mode_gives_up_loudly_after_its_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If every offered port is taken on ::1, open_receiver fails with a reason and leaks nothing."""
    calls: list[int] = []

    def listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
        if family == socket.AF_INET6:
            calls.append(port)
            raise ol.CallbackPortInUse(port, host)
        return real_listen(family, host, port)

    real_listen = _binding._listen
    monkeypatch.setattr(_binding, "_listen", listen)
    with pytest.raises(ol.OAuthLoopbackError, match="host='127.0.0.1'"):
        async with ol.open_receiver(ol.CallbackConfig(host="localhost")):
            pytest.fail("opened without ::1")
    assert len(calls) == _binding._DUAL_STACK_TRIES


async def test_localhost_mode_without_ipv6_logs_and_serves_ipv4(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """No IPv6 loopback: a clear warning, then 127.0.0.1 only, still under the localhost URI."""
    real_listen = _binding._listen

    def listen(family: socket.AddressFamily, host: str, port: int) -> socket.socket:
        if family == socket.AF_INET6:
            raise OSError(errno.EADDRNOTAVAIL, "Cannot assign requested address")
        return real_listen(family, host, port)

    monkeypatch.setattr(_binding, "_listen", listen)
    with caplog.at_level(logging.WARNING, logger="oauth_loopback"):
        async with ol.open_receiver(ol.CallbackConfig(host="localhost")) as receiver:
            assert receiver.redirect_uri == f"http://localhost:{receiver.port}/callback"
            pending = receiver.expect()
            reply = await _http.get(
                receiver.port,
                f"/callback?state={pending.state}&code=v4",
                host_header=f"localhost:{receiver.port}",
            )
            assert reply.status == 200
            assert (await pending.wait(5)).code == "v4"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no IPv6 loopback" in m and "127.0.0.1 only" in m for m in warnings)


def test_squatter_script_is_what_the_table_says(tmp_path: Path) -> None:
    """Sanity of the harness: on this kernel a dual-stack [::] listener really covers 127.0.0.1."""
    if not _has_ipv6_loopback():
        pytest.skip("this machine has no ::1")
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as wildcard:
        wildcard.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        wildcard.bind(("::", 0))
        wildcard.listen(1)
        port = wildcard.getsockname()[1]
        with socket.socket() as ours, pytest.raises(OSError, match="in use") as info:
            ours.bind(("127.0.0.1", port))
        assert info.value.errno == errno.EADDRINUSE


async def test_bound_but_not_listening_squatter_cannot_listen_after_us() -> None:
    """A squatter that bound P with SO_REUSEADDR first cannot listen once we do; the browser reaches us."""
    port = _fixed_port()
    with socket.socket() as squatter:
        squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        squatter.bind(("127.0.0.1", port))
        async with ol.open_receiver(ol.CallbackConfig(port=port)) as receiver:
            with pytest.raises(OSError, match="in use") as info:
                squatter.listen(1)
            assert info.value.errno == errno.EADDRINUSE
            await _reaches_us(port, receiver)
