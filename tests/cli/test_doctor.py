"""`oauth-loopback doctor`: the health check a user runs first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys

import pytest


def _doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauth_loopback", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_doctor_reports_healthy_with_a_round_trip(backend: str) -> None:
    """doctor binds an ephemeral port, completes a callback round trip, and exits 0."""
    result = _doctor("--backend", backend, "doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"backend {backend}" in out
    assert "127.0.0.1: bound port" in out
    assert "127.0.0.1: callback round trip in" in out
    assert "port 19876" in out
    assert out.rstrip().endswith("healthy")


def test_doctor_names_the_holder_of_a_busy_port() -> None:
    """doctor --port N on a busy port exits 1 and names the holder and the setting to change."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        result = _doctor("doctor", "--port", str(port))
    assert result.returncode == 1
    assert f"Callback port {port} on 127.0.0.1 is already in use" in result.stdout
    if sys.platform == "linux":
        assert f"pid {os.getpid()}" in result.stdout
    assert "callbackPort" in result.stdout
    assert "NOT healthy" in result.stdout


def test_doctor_rejects_an_invalid_port() -> None:
    """A port outside 1-65535 is a usage error (exit 2)."""
    result = _doctor("doctor", "--port", "70000")
    assert result.returncode == 2
    assert "must be a port number from 1 to 65535" in result.stderr
