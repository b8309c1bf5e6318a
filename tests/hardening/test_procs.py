"""Many processes opening ephemeral receivers at the same moment never collide.

50 child processes (half on asyncio, half on trio) wait at a barrier (a line on stdin), open a
receiver at once, report their port and state, and wait for a callback that this test sends
to each while all 50 are still listening. Nothing probes for a free port: each child binds
port 0 and keeps the very socket the kernel gave it, so distinct ports are guaranteed.
"""

from __future__ import annotations

import resource
import selectors
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

PROCESSES = 50
DEADLINE = 50.0  # seconds for the whole scenario; pytest-timeout is the outer bound

CHILD = """\
import sys
import anyio
import oauth_loopback as ol

async def main():
    print("ready", flush=True)
    sys.stdin.readline()  # the barrier: every child is started and waiting here
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        print(receiver.port, pending.state, flush=True)
        response = await pending.wait(30)
        print("ok", response.code, flush=True)

anyio.run(main, backend=sys.argv[1])
"""


def _read_lines(procs: list[subprocess.Popen[str]], deadline: float) -> list[str]:
    """One line from each child's stdout, waiting on all at once, bounded by ``deadline``."""
    lines: dict[int, str] = {}
    with selectors.DefaultSelector() as sel:
        for i, proc in enumerate(procs):
            assert proc.stdout is not None
            sel.register(proc.stdout, selectors.EVENT_READ, i)
        while len(lines) < len(procs):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                pytest.fail(f"only {len(lines)} of {len(procs)} children answered in time")
            for key, _ in sel.select(remaining):
                sel.unregister(key.fileobj)
                lines[key.data] = procs[key.data].stdout.readline()
    return [lines[i] for i in range(len(procs))]


def _callback(port: int, state: str, code: str) -> bytes:
    """Play the browser: GET the callback over a plain socket and return the whole reply."""
    request = f"GET /callback?state={state}&code={code} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    reply = b""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request.encode())
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_fifty_processes_get_distinct_ports_and_each_completes_a_callback(
    tmp_path: Path,
) -> None:
    """50 processes released at once all bind distinct ephemeral ports and each gets its code."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < 4 * PROCESSES + 100:
        pytest.skip(f"ulimit -n is {soft}; this test needs {4 * PROCESSES + 100}")
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    deadline = time.monotonic() + DEADLINE
    procs: list[subprocess.Popen[str]] = []
    try:
        procs += [
            subprocess.Popen(
                [sys.executable, str(script), "trio" if i % 2 else "asyncio"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for i in range(PROCESSES)
        ]
        assert _read_lines(procs, deadline) == ["ready\n"] * PROCESSES
        for proc in procs:  # release the barrier: all 50 bind at (nearly) the same moment
            assert proc.stdin is not None
            proc.stdin.write("go\n")
            proc.stdin.flush()
        reports = [line.split() for line in _read_lines(procs, deadline)]
        ports = [int(port) for port, _ in reports]
        assert len(set(ports)) == PROCESSES, "two processes were given the same port"
        assert all(port != 19876 for port in ports)  # never the legacy port unless asked
        # Every receiver is listening right now; play the browser for each.
        for i, (port, state) in enumerate(reports):
            assert _callback(int(port), state, f"code-{i}").startswith(b"HTTP/1.1 200 ")
        assert _read_lines(procs, deadline) == [f"ok code-{i}\n" for i in range(PROCESSES)]
        for proc in procs:
            assert proc.wait(max(deadline - time.monotonic(), 1)) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()
