"""Two processes, one FileTokenStore, one rotating refresh token: neither spends it twice.

The embedded server runs in this test's event loop (asyncio or trio); the two CLI runs are
real processes started at once, released together by one line on their stdin.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

import anyio
import pytest
from anyio.abc import Process

import oauth_loopback as ol
from oauth_loopback.testing import AuthorizationServer
from tests.login._support import Browser, count, expire, grants

pytestmark = pytest.mark.anyio

CHILD = Path(__file__).with_name("_get_token_child.py")


async def _line(process: Process) -> str:
    """One line of the child's stdout (children print short lines and flush each)."""
    assert process.stdout is not None
    data = b""
    while not data.endswith(b"\n"):
        chunk = await process.stdout.receive()
        data += chunk
    return data.decode().strip()


async def test_two_processes_refresh_one_rotating_token_once(tmp_path: Path) -> None:
    """Started at once on an expired login, both processes succeed with no login and no
    refresh token reuse: one refreshes, the other reads its result under the lock."""
    async with AuthorizationServer(detect_refresh_token_reuse=True) as server:
        await ol.get_token(server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=Browser())
        await expire(ol.FileTokenStore(tmp_path), ol.LoginKey(server.issuer))
        argv = [sys.executable, str(CHILD), server.issuer, str(tmp_path)]
        with anyio.fail_after(60):
            async with await anyio.open_process(argv) as a, await anyio.open_process(argv) as b:
                assert [await _line(a), await _line(b)] == ["ready", "ready"]
                assert a.stdin is not None
                assert b.stdin is not None
                await a.stdin.send(b"go\n")
                await b.stdin.send(b"go\n")
                results = [await _line(a), await _line(b)]
                assert [await a.wait(), await b.wait()] == [0, 0]
        assert server.refresh_token_reuses == 0
        assert grants(server) == ["authorization_code", "refresh_token"]
        assert count(server, "GET", "/authorize") == 1  # the first login only
        refreshed = server.issued_tokens[-1].access_token
        assert results == [hashlib.sha256(refreshed.encode()).hexdigest()] * 2
        login = await ol.FileTokenStore(tmp_path).load(ol.LoginKey(server.issuer))
        assert login is not None
        assert login.tokens is not None
        assert login.tokens.refresh_token == server.issued_tokens[-1].refresh_token


async def test_without_the_lock_the_server_would_catch_the_double_spend(tmp_path: Path) -> None:
    """The control: presenting the spent refresh token again is detected and logs both out,
    which is what the lock prevents."""
    async with AuthorizationServer(detect_refresh_token_reuse=True) as server:
        await ol.get_token(server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=Browser())
        stale = await ol.FileTokenStore(tmp_path).load(ol.LoginKey(server.issuer))
        await expire(ol.FileTokenStore(tmp_path), ol.LoginKey(server.issuer))
        await ol.get_token(server.issuer, store=ol.FileTokenStore(tmp_path))
        assert stale is not None
        await ol.FileTokenStore(tmp_path).save(stale)  # a process that read before the refresh
        await expire(ol.FileTokenStore(tmp_path), ol.LoginKey(server.issuer))
        browser = Browser()
        await ol.get_token(server.issuer, store=ol.FileTokenStore(tmp_path), open_browser=browser)
        assert server.refresh_token_reuses == 1
        assert browser.count == 1  # the family was revoked: a login was the only way back
        assert all(t.revoked for t in server.issued_tokens[:2])
