"""The MCP adapter: the browser's page waits for the SDK's token exchange and tells the truth.

The SDK's ``OAuthClientProvider`` (built by ``cb.client_provider``) logs in against the
embedded ``AuthorizationServer`` guarding a ``ProtectedResource``, over real loopback HTTP: a
resource request answered 401 starts discovery, registration, the browser leg (a
launcher-style stand-in that records the page it receives) and the token exchange.
"""

from __future__ import annotations

import anyio
import anyio.abc
import httpx2
import pytest

from oauth_loopback import CallbackConfig
from oauth_loopback.mcp import loopback_oauth
from oauth_loopback.testing import AuthorizationServer, ProtectedResource
from tests.mcp_adapter._harness import SDK_WARNINGS, MemoryStorage

pytestmark = [pytest.mark.anyio, *SDK_WARNINGS]


class LauncherBrowser:
    """Like webbrowser.open: starts loading the page in the background and returns at once."""

    def __init__(self, tg: anyio.abc.TaskGroup) -> None:
        self._tg = tg
        self.pages: list[tuple[int, str]] = []

    def __call__(self, url: str) -> bool:
        self._tg.start_soon(self._visit, url)
        return True

    async def _visit(self, url: str) -> None:
        async with httpx2.AsyncClient(trust_env=False, follow_redirects=True, timeout=20) as client:
            response = await client.get(url)
        self.pages.append((response.status_code, response.text))


async def _request_resource(
    server: AuthorizationServer,
) -> tuple[int | BaseException, list[tuple[int, str]]]:
    """GET the protected resource through the adapter; its status (or the SDK's error), pages."""
    outcome: int | BaseException
    async with ProtectedResource(server) as resource, anyio.create_task_group() as tg:
        browser = LauncherBrowser(tg)
        async with loopback_oauth(CallbackConfig(app_name="Test App"), open_browser=browser) as cb:
            provider = cb.client_provider(resource.url, MemoryStorage())
            async with httpx2.AsyncClient(auth=provider, trust_env=False, timeout=20) as http:
                try:
                    with anyio.fail_after(30):
                        outcome = (await http.get(resource.url)).status_code
                except Exception as exc:  # the SDK's own error type  # noqa: BLE001
                    outcome = exc
    return outcome, browser.pages


async def test_mcp_page_says_signed_in_once_the_sdk_stored_a_token() -> None:
    """The SDK's login succeeds: the resource answers 200 and the page says 'Signed in'."""
    async with AuthorizationServer() as server:
        outcome, pages = await _request_resource(server)
    assert outcome == 200
    assert [status for status, _ in pages] == [200]
    assert "Signed in" in pages[0][1]


async def test_mcp_page_says_sign_in_failed_when_the_token_exchange_fails() -> None:
    """token_error=invalid_grant: the SDK raises, and the page says 'Sign-in failed — <why>'."""
    async with AuthorizationServer(token_error="invalid_grant") as server:
        outcome, pages = await _request_resource(server)
    assert isinstance(outcome, Exception)
    ((status, page),) = pages
    assert status == 400
    assert "Signed in" not in page
    assert "Sign-in failed \N{EM DASH} Test App could not finish the sign-in" in page
    assert "invalid_grant" in page


async def test_mcp_page_refuses_a_wrong_iss() -> None:
    """wrong_iss=True: the receiver refuses the response (400 page); no token is asked for."""
    async with AuthorizationServer(wrong_iss=True) as server:
        outcome, pages = await _request_resource(server)
        assert not server.issued_tokens
    assert isinstance(outcome, Exception)
    ((status, page),) = pages
    assert status == 400
    assert "Signed in" not in page
