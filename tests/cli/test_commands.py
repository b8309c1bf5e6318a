"""`oauth-loopback demo` and `oauth-loopback login`, in-process and as real subprocesses.

In-process runs call the command's coroutine with the embedded authorization server running on
the test's own event loop and its headless browser stand-in as the opener; subprocess runs
check the console entry point, the start-up laziness and the paste prompt on real stdin.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import stat
import subprocess
import sys
from pathlib import Path

import anyio
import httpx2
import pytest

from oauth_loopback import _cli
from oauth_loopback._cli import _login as login_command
from oauth_loopback.testing import AuthorizationServer, follow_redirects

pytestmark = pytest.mark.anyio


def _run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauth_loopback", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env=None if env is None else {**os.environ, **env},
    )


def _login_args(*args: str) -> argparse.Namespace:
    return _cli._parser().parse_args(["login", *args])


# --- help and start-up ----------------------------------------------------------------------


def test_help_lists_the_commands() -> None:
    """`oauth-loopback --help` exits 0 and lists every command with its help text, though a
    command's own arguments are only built when it runs."""
    result = _run_cli("--help")
    assert result.returncode == 0, result.stderr
    for command, help_text in (
        ("doctor", "check that loopback callbacks work here"),
        ("demo", "run a complete login against an embedded"),
        ("login", "log in to an authorization server through your browser"),
        ("cimd", "write or check a client ID metadata document"),
        ("token", "print a valid access token for ISSUER"),
        ("status", "list the stored logins (no secrets)"),
        ("logout", "forget the stored login to ISSUER"),
    ):
        assert re.search(rf"^    {command}\s+{re.escape(help_text)}", result.stdout, re.M), command


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        pytest.param(["token", "--help"], "--client-id ID", id="token-help"),
        pytest.param(["cimd", "write", "--help"], "--logo-uri URI", id="nested-help"),
        pytest.param(["doctor", "--help"], "--port PORT", id="doctor-help"),
    ],
)
def test_each_command_help_shows_its_arguments(argv: list[str], expected: str) -> None:
    """A command's --help shows the arguments that are added when it is chosen."""
    result = _run_cli(*argv)
    assert result.returncode == 0, result.stderr
    assert expected in result.stdout


def test_version_is_looked_up_when_asked() -> None:
    """`--version` prints the installed version (looked up only then: no other run pays)."""
    from importlib.metadata import version

    result = _run_cli("--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"oauth-loopback {version('oauth-loopback')}\n"


def test_unknown_command_lists_every_command() -> None:
    """A misspelt command is refused by argparse with every command's name (exit 2)."""
    result = _run_cli("tokn")
    assert result.returncode == 2
    assert "invalid choice: 'tokn'" in result.stderr
    for command in ("doctor", "demo", "login", "cimd", "token", "status", "logout"):
        assert repr(command) in result.stderr


def test_help_width_follows_columns() -> None:
    """Help is wrapped at $COLUMNS, as argparse's own formatter does."""
    narrow = _run_cli("login", "--help", env={"COLUMNS": "50"})
    wide = _run_cli("login", "--help", env={"COLUMNS": "300"})
    description = "Log in to ISSUER: discover its metadata, register a client (unless"
    assert description not in narrow.stdout  # wrapped before its end
    assert "Log in to ISSUER: discover its" in narrow.stdout
    assert description in wide.stdout
    assert len(narrow.stdout.splitlines()) > len(wide.stdout.splitlines())


def test_login_help_documents_the_options() -> None:
    """`login --help` names every option of the issue, and --port/--legacy-port conflict."""
    result = _run_cli("login", "--help")
    assert result.returncode == 0, result.stderr
    for option in (
        "--client-id",
        "--client-secret",
        "--scope",
        "--resource",
        "--port",
        "--legacy-port",
        "--redirect-uri",
        "--no-browser",
        "--json",
        "--output",
        "--timeout",
    ):
        assert option in result.stdout
    clash = _run_cli("login", "https://as.example", "--port", "8000", "--legacy-port")
    assert clash.returncode == 2
    assert "not allowed with" in clash.stderr


def test_import_and_help_do_not_load_the_login_stack() -> None:
    """`import oauth_loopback` and `--help` import none of authlib, httpx2, trio, anyio,
    asyncio and h11: the package root and the parser load them on first use only."""
    code = (
        "import sys, contextlib, io\n"
        "import oauth_loopback\n"
        "from oauth_loopback._cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['--help'])\n"
        "print(sorted(m for m in ('authlib', 'httpx2', 'trio', 'anyio', 'asyncio', 'h11')\n"
        "             if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# --- demo -----------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_demo_prints_every_step_and_exits_zero(backend: str) -> None:
    """demo runs a whole login against the embedded server and times each step."""
    result = _run_cli("--backend", backend, "demo")
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert f"backend {backend}" in out
    for step in ("bind", "discovery", "registration", "redirect", "callback", "token"):
        assert re.search(rf"^  {step}\s+\d+\.\d\d ms  ", out, re.MULTILINE), step
    # The token is shown redacted: four characters and an ellipsis, never more.
    assert re.search(r"access token \S{4}…", out)
    assert out.rstrip().splitlines()[-1].startswith("ok:")


# --- login, in-process against the embedded server ------------------------------------------


async def test_login_output_file_is_private_and_replaces_the_old_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--output writes the token JSON with mode 0600, replacing an older file, no temp left."""
    target = tmp_path / "token.json"
    target.write_text("old")
    target.chmod(0o644)
    async with AuthorizationServer() as server:
        args = _login_args(server.issuer, "--output", str(target), "--timeout", "20")
        code = await login_command.login(args, open_browser=follow_redirects)
        (issued,) = server.issued_tokens
    captured = capsys.readouterr()
    assert code == 0, captured.err
    document = _read_private(target)
    assert document["access_token"] == issued.access_token
    assert document["token_type"] == "Bearer"
    assert sorted(os.listdir(tmp_path)) == ["token.json"]
    assert issued.access_token not in captured.out + captured.err


def _read_private(target: Path) -> dict[str, object]:
    """Check the token file is 0600 and alone in its directory, and return its JSON."""
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no temp file
    document: dict[str, object] = json.loads(target.read_text())
    return document


async def test_login_json_goes_to_stdout_with_a_pre_registered_client(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--json prints the token response on stdout; messages stay on stderr."""
    async with AuthorizationServer(registration=False) as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        args = _login_args(
            server.issuer,
            f"--client-id={client_id}",
            "--json",
            "--resource",
            "https://mcp.example/",
            "--timeout",
            "20",
        )
        code = await login_command.login(args, open_browser=follow_redirects)
        (issued,) = server.issued_tokens
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert json.loads(captured.out)["access_token"] == issued.access_token
    assert issued.resource == ("https://mcp.example/",)
    assert "If it does not open, visit:" in captured.err


async def test_login_without_json_prints_a_redacted_summary(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Without --json or --output only a redacted summary is printed."""
    async with AuthorizationServer() as server:
        code = await login_command.login(
            _login_args(server.issuer, "--timeout", "20"), open_browser=follow_redirects
        )
        (issued,) = server.issued_tokens
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "Logged in: Bearer token" in captured.out
    assert issued.access_token not in captured.out + captured.err


async def test_login_denied_is_one_error_line(capsys: pytest.CaptureFixture[str]) -> None:
    """A denied login exits 1 with one 'error:' line on stderr."""
    async with AuthorizationServer(deny=True) as server:
        code = await login_command.login(
            _login_args(server.issuer, "--json"), open_browser=follow_redirects
        )
    captured = capsys.readouterr()
    assert code == 1
    assert captured.out == ""
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert errors[0].startswith("error: The authorization server refused the login")
    assert captured.err.endswith(errors[0] + "\n")


async def test_login_discovery_failure_names_the_urls(capsys: pytest.CaptureFixture[str]) -> None:
    """An issuer with no metadata: exit 1 and the message names both URLs tried."""
    async with AuthorizationServer() as server:
        issuer = f"{server.issuer}/elsewhere"
        code = await login_command.login(_login_args(issuer), open_browser=follow_redirects)
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("error: Could not discover")
    assert f"{server.issuer}/.well-known/oauth-authorization-server/elsewhere" in err
    assert f"{server.issuer}/elsewhere/.well-known/openid-configuration" in err


async def test_login_busy_port_prints_its_message(capsys: pytest.CaptureFixture[str]) -> None:
    """--port on a busy port: exit 1 with CallbackPortInUse's message, nothing contacted."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        code = await login_command.login(
            _login_args("https://as.example", "--port", str(port)), open_browser=follow_redirects
        )
    err = capsys.readouterr().err
    assert code == 1
    assert f"callback port {port} on 127.0.0.1 is already in use" in err
    assert "--port" in err


async def test_login_secret_without_client_id_is_a_usage_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """--client-secret without --client-id exits 2 before anything starts."""
    code = await login_command.login(_login_args("https://as.example", "--client-secret", "s"))
    assert code == 2
    assert "--client-id" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["0", "-1", "nan", "soon"])
def test_login_timeout_must_be_positive(value: str) -> None:
    """--timeout refuses zero, negative and non-numbers with a usage error."""
    with pytest.raises(SystemExit):
        _cli._parser().parse_args(["login", "https://as.example", "--timeout", value])


async def test_status_line_shows_time_left_and_how_to_cancel(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The live status line names the time left and Ctrl-C, and clears itself when done."""
    opened, done = anyio.Event(), anyio.Event()
    opened.set()
    async with anyio.create_task_group() as tg:
        tg.start_soon(login_command.status_line, opened, done, 125.0)
        await anyio.wait_all_tasks_blocked()
        done.set()
    err = capsys.readouterr().err
    assert "2:0" in err  # 2:04 or 2:05 left
    assert "Ctrl-C to cancel" in err
    assert err.endswith("\r\x1b[2K")


# --- login --no-browser: paste on real stdin -------------------------------------------------


async def test_login_no_browser_reads_the_pasted_address_from_stdin(
    anyio_backend_name: str,
) -> None:
    """--no-browser shows the URL, reads the pasted redirect from stdin and prints the token."""
    async with AuthorizationServer() as server:
        command = [
            sys.executable,
            "-m",
            "oauth_loopback",
            "--backend",
            anyio_backend_name,
            "login",
            server.issuer,
            "--no-browser",
            "--json",
            "--timeout",
            "30",
        ]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        async with await anyio.open_process(command, env=env) as process:
            assert process.stdin is not None
            assert process.stdout is not None
            assert process.stderr is not None
            seen = b""
            with anyio.fail_after(30):
                while b"then press Enter" not in seen:
                    seen += await process.stderr.receive()
            match = re.search(rb"(http://127\.0\.0\.1:\d+/authorize\?\S+)", seen)
            assert match, seen
            # The browser on "another machine": stop at the redirect, never reach loopback.
            async with httpx2.AsyncClient(trust_env=False) as browser:
                reply = await browser.get(match.group(1).decode())
            await process.stdin.send(reply.headers["location"].encode() + b"\n")
            out = b""
            with anyio.fail_after(30):
                async for chunk in process.stdout:
                    out += chunk
                returncode = await process.wait()
        (issued,) = server.issued_tokens
    assert returncode == 0
    assert json.loads(out)["access_token"] == issued.access_token
