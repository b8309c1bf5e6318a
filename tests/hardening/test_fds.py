"""Out of file descriptors: idle sockets cannot keep the browser queued in the kernel.

The receiver runs in a child process (asyncio or trio) whose ``ulimit -n`` leaves room for
only 10 more sockets, far below ``max_connections``. The test holds 30 silent connections to
it, then plays the browser. When accept() fails with EMFILE the receiver closes the connection
idle longest, as the connection cap does; before this, the browser waited in the listen queue
until the silent connections' read deadlines (30 s here) expired.
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest

CHILD = """\
import os, resource, sys
import anyio
import oauth_loopback as ol

async def main():
    config = ol.CallbackConfig(read_timeout=60, max_connections=64)
    async with ol.open_receiver(config) as receiver:
        in_use = len(os.listdir("/proc/self/fd"))
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (in_use + 10, hard))
        pending = receiver.expect()
        print(receiver.port, pending.state, flush=True)
        response = await pending.wait(60)
        print("ok", response.code, flush=True)

anyio.run(main, backend=sys.argv[1])
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="counts /proc/self/fd")
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_exhausted_file_descriptors_do_not_queue_the_browser(tmp_path: Path, backend: str) -> None:
    """With fds exhausted by 30 silent sockets, the callback is still answered (within 10 s, not 60)."""
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen(
        [sys.executable, str(script), backend], stdout=subprocess.PIPE, text=True
    )
    silent: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port_text, state = child.stdout.readline().split()
        port = int(port_text)
        silent += [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(30)]
        request = f"GET /callback?state={state}&code=fd HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        # 10 s: far less than the silent sockets' 60 s read deadline the old code waited for.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as browser:
            browser.sendall(request.encode())
            assert browser.recv(64).startswith(b"HTTP/1.1 200 ")
        assert child.stdout.readline() == "ok fd\n"
        assert child.wait(10) == 0
    finally:
        for sock in silent:
            sock.close()
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout is not None:
            child.stdout.close()
