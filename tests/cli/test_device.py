"""login --device and demo --device as real subprocesses; the device login chosen by itself
where no browser can open and nobody can paste."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from oauth_loopback.testing import AuthorizationServer

BACKENDS = ["asyncio", "trio"]


@pytest.fixture
def portal_server() -> Iterator[tuple[anyio.from_thread.BlockingPortal, AuthorizationServer]]:
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(
            AuthorizationServer(device_interval=0.05)
        ) as running:
            yield portal, running


def _device_login(
    portal_server: tuple[anyio.from_thread.BlockingPortal, AuthorizationServer],
    backend: str,
    tmp_path: Path,
    *flags: str,
    env_extra: dict[str, str] | None = None,
) -> tuple[subprocess.CompletedProcess[str], str]:
    portal, server = portal_server
    env = {
        k: v for k, v in os.environ.items() if k not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")
    }
    env.update(env_extra or {})
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "oauth_loopback",
            "--backend",
            backend,
            "login",
            server.issuer,
            "--json",
            "--store",
            str(tmp_path),
            *flags,
        ],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert child.stderr is not None
        lines: list[str] = []
        code = None
        for _ in range(30):  # bounded: the code is printed before polling starts
            line = child.stderr.readline()
            lines.append(line)
            if not line:
                break
            if line.startswith("  ") and line.strip() and "-" in line and " " not in line.strip():
                code = line.strip()
                break
        assert code is not None, "".join(lines)
        portal.call(server.approve_device, code)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    return subprocess.CompletedProcess(
        child.args, child.returncode, out, "".join(lines) + err
    ), code


@pytest.mark.parametrize("backend", BACKENDS)
def test_login_device_prints_the_code_and_gets_the_token(
    portal_server: tuple[anyio.from_thread.BlockingPortal, AuthorizationServer],
    backend: str,
    tmp_path: Path,
) -> None:
    """--device: the code and URL on stderr, the token on stdout once the user approves."""
    import json

    result, code = _device_login(portal_server, backend, tmp_path, "--device")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["token_type"] == "Bearer"
    assert "enter the code" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_device_login_is_chosen_when_no_browser_can_open_here(
    portal_server: tuple[anyio.from_thread.BlockingPortal, AuthorizationServer], tmp_path: Path
) -> None:
    """No display, no $BROWSER, stdin not a terminal (no paste): the device grant, by itself."""
    result, _ = _device_login(portal_server, "asyncio", tmp_path)
    assert result.returncode == 0, result.stderr
    assert "enter the code" in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_demo_device_completes(backend: str) -> None:
    """demo --device runs the whole device login offline and says ok."""
    result = subprocess.run(
        [sys.executable, "-m", "oauth_loopback", "--backend", backend, "demo", "--device"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("for a real one)")
