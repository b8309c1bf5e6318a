"""The command line fails the way a person can act on: one ``error:`` line naming the flag, exit
1 (130 for Ctrl-C), never a traceback -- checked as real subprocesses on asyncio and trio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from oauth_loopback.testing import AuthorizationServer

BACKENDS = ["asyncio", "trio"]


@pytest.fixture
def server() -> Iterator[AuthorizationServer]:
    """An embedded authorization server on its own event loop thread, for the subprocesses."""
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(AuthorizationServer()) as running:
            yield running


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, **extra)
    # A browser launcher that "opens" nothing and succeeds: the login then waits.
    env.setdefault("BROWSER", "true")
    env["HOME"] = str(tmp_path)
    env.pop("DISPLAY", None)
    return env


def _cli(
    *args: str, env: dict[str, str], stdin: str | None = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauth_loopback", *args],
        capture_output=True,
        text=True,
        input=stdin,
        env=env,
        timeout=timeout,
        check=False,
    )


def _one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, result.stderr
    return errors[0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_ctrl_c_during_login_exits_130_without_a_traceback(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """A real SIGINT while the login waits for the browser: 'interrupted', exit 130, both backends."""
    child = subprocess.Popen(
        [sys.executable, "-m", "oauth_loopback", "--backend", backend, "login", server.issuer],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
    )
    try:
        assert child.stderr is not None
        for _ in range(50):  # bounded: the URL is shown once the browser is asked to open
            line = child.stderr.readline()
            if not line or "visit:" in line:
                break
        assert "visit:" in line, line
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().endswith("interrupted")


_EACCES_BELOW_1024 = textwrap.dedent(
    """
    import errno, socket, sys
    _bind = socket.socket.bind
    def bind(self, address):
        if isinstance(address, tuple) and 0 < address[1] < 1024:
            raise PermissionError(errno.EACCES, "Permission denied")
        return _bind(self, address)
    socket.socket.bind = bind
    from oauth_loopback._cli import main
    sys.exit(main(sys.argv[1:]))
    """
)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("where", [["--port", "80"], ["--redirect-uri", "http://127.0.0.1:81/cb"]])
def test_privileged_port_is_one_line_naming_the_flag(
    server: AuthorizationServer, backend: str, where: list[str], tmp_path: Path
) -> None:
    """A port the OS refuses (as for a normal user below 1024): one error line, exit 1."""
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            _EACCES_BELOW_1024,
            "--backend",
            backend,
            "login",
            server.issuer,
            *where,
        ],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=30,
        check=False,
    )
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "drop --port" in line
    assert "1024" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_busy_port_names_the_flags(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """A busy --port says which flags fix it, not Python parameters."""
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = _cli(
            "--backend", backend, "login", server.issuer, "--port", str(port), env=_env(tmp_path)
        )
    line = _one_error_line(result)
    assert result.returncode == 1
    assert f"port {port}" in line
    assert "--port" in line
    assert "port=" not in line
    assert "callbackPort" not in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_output_path_is_checked_before_the_login(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """--output into a missing directory fails at once: no request reaches the server."""
    target = tmp_path / "missing" / "tok.json"
    result = _cli(
        "--backend", backend, "login", server.issuer, "--output", str(target), env=_env(tmp_path)
    )
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "--output" in line
    assert "does not exist" in line
    assert server.requests == []
    assert ".tmp" not in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_timeout_names_the_timeout_flag(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """A login nobody finishes ends with the --timeout hint, not wait(timeout=...)."""
    result = _cli(
        "--backend", backend, "login", server.issuer, "--timeout", "0.5", env=_env(tmp_path)
    )
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "--timeout" in line
    assert "wait(" not in line


@pytest.mark.parametrize("command", [["doctor"], ["login", "https://as.example"]])
@pytest.mark.parametrize("value", ["0", "70000", "x"])
def test_port_rules_are_the_same_in_every_command(
    command: list[str], value: str, tmp_path: Path
) -> None:
    """--port takes 1..65535 in doctor and login alike; the message never says 'None'."""
    result = _cli(*command, "--port", value, env=_env(tmp_path))
    assert result.returncode == 2
    assert "None" not in result.stderr
    assert "leave --port out" in result.stderr


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_browser_hints_at_no_browser(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """With no browser to open, the user is told about --no-browser instead of a silent wait."""
    result = _cli(
        "--backend",
        backend,
        "login",
        server.issuer,
        "--timeout",
        "1",
        env=_env(tmp_path, BROWSER="false"),
    )
    assert "--no-browser" in result.stderr
    assert result.returncode == 1
    _one_error_line(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_end_of_input_at_the_paste_prompt_stops_the_login(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """Ctrl-D (end of input) at the --no-browser prompt ends the login at once, not at the timeout."""
    result = _cli(
        "--backend",
        backend,
        "login",
        server.issuer,
        "--no-browser",
        env=_env(tmp_path),
        stdin="",
        timeout=20,
    )
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "input ended" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_rejected_paste_asks_again(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """A pasted address that is not this login's says why and asks again, without 'start again'."""
    result = _cli(
        "--backend",
        backend,
        "login",
        server.issuer,
        "--no-browser",
        env=_env(tmp_path),
        stdin="http://127.0.0.1:1/callback?code=x&state=nobody\n",
        timeout=20,
    )
    assert "That address was not accepted (unknown sign-in)" in result.stderr
    assert "Start the sign-in again" not in result.stderr
    assert "input ended" in _one_error_line(result)


@pytest.mark.parametrize("backend", BACKENDS)
def test_metadata_file_skips_discovery(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """--metadata FILE logs in without asking for the server's well-known metadata."""
    metadata = tmp_path / "as.json"
    metadata.write_text(json.dumps(dict(server.metadata)))
    script = textwrap.dedent(
        f"""
        import sys, anyio
        from oauth_loopback._cli import _login, _parser
        from oauth_loopback.testing import follow_redirects
        args = _parser().parse_args(["login", {server.issuer!r}, "--metadata", {str(metadata)!r}, "--json"])
        sys.exit(anyio.run(lambda: _login.login(args, open_browser=follow_redirects), backend={backend!r}))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        env=_env(tmp_path),
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["token_type"] == "Bearer"
    assert not any("well-known" in path for _, path in server.requests)


@pytest.mark.parametrize("content", ["[1]", "not json", None])
def test_bad_metadata_file_is_one_line(content: str | None, tmp_path: Path) -> None:
    """A missing, non-JSON or non-object --metadata file: one line naming --metadata, exit 1."""
    path = tmp_path / "m.json"
    if content is not None:
        path.write_text(content)
    result = _cli("login", "https://as.example", "--metadata", str(path), env=_env(tmp_path))
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "--metadata" in line


@pytest.mark.parametrize("backend", BACKENDS)
def test_stale_client_id_fails_in_seconds_naming_the_flag(
    server: AuthorizationServer, backend: str, tmp_path: Path
) -> None:
    """A --client-id the server does not know: one error line naming --client-id, well before --timeout."""
    import time

    started = time.monotonic()
    result = _cli(
        "--backend",
        backend,
        "login",
        server.issuer,
        "--client-id",
        "forgotten",
        "--timeout",
        "120",
        env=_env(tmp_path),
    )
    assert time.monotonic() - started < 15
    line = _one_error_line(result)
    assert result.returncode == 1
    assert "'forgotten'" in line
    assert "--client-id" in line
    assert "client_id=" not in line
