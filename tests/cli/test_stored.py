"""login saves the login; token prints a valid token (fast, no authlib); status lists logins
without secrets; logout revokes at the server (RFC 7009) and forgets the login."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import anyio.from_thread
import pytest

from oauth_loopback._cli import _login as login_command
from oauth_loopback._cli import _parser
from oauth_loopback.testing import AuthorizationServer, follow_redirects

# What `oauth-loopback token` with a valid stored token must not import: the event loop
# libraries, what only a refresh or a login needs, logging (nothing is configured to log) and,
# for the plain shape scripts write, argparse.
_NOT_FOR_A_STORED_TOKEN = (
    "argparse",
    "anyio",
    "asyncio",
    "trio",
    "sniffio",
    "h11",
    "authlib",
    "httpx2",
    "logging",
)


@pytest.fixture
def server() -> Iterator[tuple[AuthorizationServer, anyio.from_thread.BlockingPortal]]:
    """An embedded authorization server on its own event loop thread."""
    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(AuthorizationServer()) as running:
            yield running, portal


def _run(*args: str, store: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "oauth_loopback", *args, "--store", str(store)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env=dict(os.environ),
    )


def _login(portal: anyio.from_thread.BlockingPortal, issuer: str, store: Path, *extra: str) -> str:
    args = _parser().parse_args(["login", issuer, "--json", "--store", str(store), *extra])
    code = portal.call(lambda: login_command.login(args, open_browser=follow_redirects))
    assert code == 0
    return str(args.issuer)


def test_login_saves_and_token_prints_it_without_an_event_loop(
    server: tuple[AuthorizationServer, anyio.from_thread.BlockingPortal],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """After login, 'token ISSUER' prints the stored access token; that path imports no event
    loop library (anyio, asyncio, trio), no h11, authlib or httpx2, and not even logging."""
    running, portal = server
    _login(portal, running.issuer, tmp_path, "--scope", "read")
    document = json.loads(capsys.readouterr().out)
    result = _run("token", running.issuer, store=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == document["access_token"] + "\n"
    files = list(tmp_path.glob("*.json"))
    assert files
    assert all(f.stat().st_mode & 0o777 == 0o600 for f in files)
    probe = textwrap.dedent(
        f"""
        import io, sys, contextlib
        from oauth_loopback._cli import main
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            code = main(["token", {running.issuer!r}, "--store", {str(tmp_path)!r}])
        loaded = {{m.partition(".")[0] for m in sys.modules}}
        heavy = sorted(loaded & {set(_NOT_FOR_A_STORED_TOKEN)!r})
        print(code, out.getvalue().strip() == {document["access_token"]!r}, heavy)
        """
    )
    checked = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.stdout.strip() == "0 True []", checked.stderr


def test_token_refuses_a_dpop_bound_stored_token_without_an_event_loop(tmp_path: Path) -> None:
    """A valid DPoP-bound stored token is not printed (useless without its key): one error
    line naming what to do instead, exit 1, nothing on stdout, no event loop imported."""
    import time

    from oauth_loopback import FileTokenStore, StoredLogin, StoredTokens
    from oauth_loopback._login._dpop import DPoPKey

    issuer = "https://as.example"
    login = StoredLogin(
        issuer=issuer,
        tokens=StoredTokens(
            access_token="bound-token", token_type="DPoP", expires_at=time.time() + 3600
        ),
        dpop_key=DPoPKey.generate().private_jwk(),
    )
    anyio.run(FileTokenStore(tmp_path).save, login)
    result = _run("token", issuer, store=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.startswith("error: the stored token is DPoP-bound (RFC 9449)")
    assert "TokenAuth" in result.stderr
    assert "bound-token" not in result.stderr
    probe = textwrap.dedent(
        f"""
        import contextlib, io, sys
        from oauth_loopback._cli import main
        with contextlib.redirect_stderr(io.StringIO()):
            code = main(["token", {issuer!r}, "--store", {str(tmp_path)!r}])
        loaded = {{m.partition(".")[0] for m in sys.modules}}
        print(code, sorted(loaded & {set(_NOT_FOR_A_STORED_TOKEN)!r}))
        """
    )
    checked = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=30, check=False
    )
    assert checked.stdout.strip() == "1 []", checked.stderr


def test_no_store_saves_nothing(
    server: tuple[AuthorizationServer, anyio.from_thread.BlockingPortal], tmp_path: Path
) -> None:
    """--no-store leaves the store empty."""
    running, portal = server
    _login(portal, running.issuer, tmp_path, "--no-store")
    assert list(tmp_path.glob("*.json")) == []


def test_status_lists_logins_without_secrets(
    server: tuple[AuthorizationServer, anyio.from_thread.BlockingPortal],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """status: issuer, client, scope, expiry, refreshable; never a token."""
    running, portal = server
    _login(portal, running.issuer, tmp_path, "--scope", "read")
    capsys.readouterr()
    result = _run("status", store=tmp_path)
    assert result.returncode == 0, result.stderr
    (issued,) = running.issued_tokens
    assert running.issuer in result.stdout
    assert "scope 'read'" in result.stdout
    assert "refreshable" in result.stdout
    assert issued.access_token not in result.stdout + result.stderr
    assert issued.refresh_token is not None
    assert issued.refresh_token not in result.stdout + result.stderr
    empty = _run("status", store=tmp_path / "none")
    assert "No stored logins" in empty.stdout


def test_logout_revokes_at_the_server_and_forgets_the_login(
    server: tuple[AuthorizationServer, anyio.from_thread.BlockingPortal],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """logout: RFC 7009 revocation at the server, the stored login deleted; a second logout says so."""
    running, portal = server
    _login(portal, running.issuer, tmp_path)
    capsys.readouterr()
    result = _run("logout", running.issuer, store=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Logged out" in result.stderr
    assert list(tmp_path.glob("*.json")) == []
    assert all(t.revoked for t in running.issued_tokens)
    again = _run("logout", running.issuer, store=tmp_path)
    assert again.returncode == 1
    assert again.stderr.startswith("error: no stored login")


def test_resource_first_login_and_token_from_the_command_line(tmp_path: Path) -> None:
    """login --resource URL and token --resource URL, no ISSUER: the server is discovered."""
    from oauth_loopback.testing import ProtectedResource

    with anyio.from_thread.start_blocking_portal() as portal:
        with portal.wrap_async_context_manager(AuthorizationServer()) as running:
            with portal.wrap_async_context_manager(
                ProtectedResource(running, required_scope="mcp:read")
            ) as mcp:
                args = _parser().parse_args(
                    ["login", "--resource", mcp.url, "--json", "--store", str(tmp_path)]
                )
                code = portal.call(lambda: login_command.login(args, open_browser=follow_redirects))
                assert code == 0
                (issued,) = running.issued_tokens
                assert issued.scope == "mcp:read"
                result = _run("token", "--resource", mcp.url, store=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout == issued.access_token + "\n"


def test_token_refreshes_with_a_metadata_file_and_no_discovery(tmp_path: Path) -> None:
    """'token ISSUER --metadata FILE' (a server that publishes no metadata): the refresh uses
    the file, and the server's well-known URLs are never asked for."""
    store = tmp_path / "store"
    with anyio.from_thread.start_blocking_portal() as portal:
        # Access tokens that live 1 s: the stored one is due for refresh at once.
        with portal.wrap_async_context_manager(AuthorizationServer(token_lifetime=1)) as running:
            metadata = tmp_path / "as.json"
            metadata.write_text(json.dumps(dict(running.metadata)))
            _login(portal, running.issuer, store, "--scope", "read", "--metadata", str(metadata))
            asked = len(running.requests)
            result = _run("token", running.issuer, "--metadata", str(metadata), store=store)
            assert result.returncode == 0, result.stderr
            grants = [t.grant_type for t in running.issued_tokens]
            later = running.requests[asked:]
    assert grants == ["authorization_code", "refresh_token"]
    assert result.stdout.strip() == running.issued_tokens[-1].access_token
    assert later
    assert not any("well-known" in path for _, path in later)


def test_token_with_a_bad_metadata_file_is_one_line(tmp_path: Path) -> None:
    """A --metadata file that is not a JSON object: one error line naming --metadata, exit 1,
    before anything is stored or asked."""
    bad = tmp_path / "m.json"
    bad.write_text("[1]")
    result = _run("token", "https://as.example", "--metadata", str(bad), store=tmp_path / "s")
    assert result.returncode == 1
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: ")
    assert "--metadata" in line
