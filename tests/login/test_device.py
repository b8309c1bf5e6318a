"""The device authorization grant (RFC 8628) against the embedded server: approve, deny,
expire, slow_down, and a server without it."""

from __future__ import annotations

import logging

import anyio
import pytest

import oauth_loopback as ol
from oauth_loopback._login import _device
from oauth_loopback._login._device import DeviceCode, device_login
from oauth_loopback.testing import AuthorizationServer

pytestmark = pytest.mark.anyio


async def test_approved_device_login_returns_the_token(caplog: pytest.LogCaptureFixture) -> None:
    """The code is shown before polling; approval during the polls ends it with a token."""
    caplog.set_level(logging.DEBUG)
    shown: list[DeviceCode] = []
    async with AuthorizationServer(device_interval=0.02) as server:

        async def user() -> None:
            await anyio.wait_all_tasks_blocked()  # the login is between two polls
            server.approve_device(shown[0].user_code)

        async with anyio.create_task_group() as tg:

            def show(code: DeviceCode) -> None:
                shown.append(code)
                tg.start_soon(user)

            token = await device_login(server.issuer, scope="read", show_code=show)
        (issued,) = server.issued_tokens
    assert token.access_token == issued.access_token
    assert issued.grant_type == "urn:ietf:params:oauth:grant-type:device_code"
    assert token.client is not None
    assert token.client.obtained == "dynamic"
    (code,) = shown
    assert code.verification_uri == f"{server.issuer}/device"
    assert code.verification_uri_complete is not None
    assert code.user_code in code.verification_uri_complete
    device_code = next(iter(server._device_codes().by_device))
    assert device_code not in repr(code)
    assert not hasattr(code, "device_code")
    assert all(device_code not in record.getMessage() for record in caplog.records)


async def test_a_denied_device_login_is_authorization_denied() -> None:
    """The user says no on the verification page: AuthorizationDenied, as in the browser flow."""
    async with AuthorizationServer(device_interval=0.02) as server:
        with pytest.raises(ol.AuthorizationDenied):
            await device_login(
                server.issuer, show_code=lambda code: server.deny_device(code.user_code)
            )


async def test_nobody_finishing_in_time_is_device_code_expired() -> None:
    """The code expires (expires_in): DeviceCodeExpired saying to start again, not a hang."""
    async with AuthorizationServer(device_interval=0.02, device_code_lifetime=0.2) as server:
        with (
            anyio.fail_after(10),
            pytest.raises(ol.DeviceCodeExpired, match="Start the login again"),
        ):
            await device_login(server.issuer, show_code=lambda code: None)


async def test_slow_down_makes_the_client_poll_more_slowly(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server wants a longer interval than it advertised: slow_down, and the polls spread out."""
    monkeypatch.setattr(_device, "SLOW_DOWN_STEP", 0.15)
    async with AuthorizationServer(device_interval=0.02) as server:
        codes = server._device_codes()

        def show(code: DeviceCode) -> None:
            (credential,) = codes.by_device.values()
            credential.interval = 0.1  # enforced from now on

        async def user(shown: list[str]) -> None:
            # The test's user answers once the server has said slow_down (bounded).
            with anyio.fail_after(10):
                while server.device_slow_downs == 0:  # noqa: ASYNC110  (no event to wait on)
                    await anyio.sleep(0.01)
            server.approve_device(shown[0])

        shown: list[str] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(user, shown)

            def show_and_record(code: DeviceCode) -> None:
                shown.append(code.user_code)
                show(code)

            token = await device_login(server.issuer, show_code=show_and_record)
        (credential,) = codes.by_device.values()
    assert token.access_token
    assert server.device_slow_downs >= 1
    gaps = [b - a for a, b in zip(credential.polls, credential.polls[1:], strict=False)]
    assert gaps[-1] >= 0.15  # after slow_down the client waits its interval plus the step


async def test_a_server_without_the_device_grant_says_what_to_do_instead() -> None:
    """No device_authorization_endpoint: UnsupportedServer naming the browser and paste ways."""
    async with AuthorizationServer(device_grant=False) as server:
        with pytest.raises(ol.UnsupportedServer, match="--no-browser"):
            await device_login(server.issuer, show_code=lambda code: None)


async def test_get_token_with_the_device_method_stores_and_reuses_the_login() -> None:
    """get_token(method='device'): a device login once, then the stored token."""
    async with AuthorizationServer(device_interval=0.02) as server:
        store = ol.MemoryTokenStore()
        shown: list[str] = []

        def show(code: DeviceCode) -> None:
            shown.append(code.user_code)
            server.approve_device(code.user_code)

        first = await ol.get_token(server.issuer, store=store, method="device", show_code=show)
        second = await ol.get_token(server.issuer, store=store, method="device", show_code=show)
    assert second.access_token == first.access_token
    assert len(shown) == 1
    with pytest.raises(TypeError, match="show_code"):
        await ol.get_token("https://as.example", store=ol.MemoryTokenStore(), method="device")


def _scripted(device_reply: dict[str, object], seen: list[str]) -> object:
    import httpx2

    issuer = "https://as.example"

    def handle(request: httpx2.Request) -> httpx2.Response:
        seen.append(request.url.path)
        if request.url.path == "/.well-known/oauth-authorization-server":
            return httpx2.Response(
                200,
                json={
                    "issuer": issuer,
                    "authorization_endpoint": f"{issuer}/authorize",
                    "token_endpoint": f"{issuer}/token",
                    "device_authorization_endpoint": f"{issuer}/device_authorization",
                    "code_challenge_methods_supported": ["S256"],
                    "response_types_supported": ["code"],
                },
            )
        if request.url.path == "/device_authorization":
            return httpx2.Response(200, json=device_reply)
        if request.url.path == "/token":
            return httpx2.Response(200, json={"access_token": "at", "token_type": "Bearer"})
        return httpx2.Response(404)

    return httpx2.MockTransport(handle)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        pytest.param("user_code", "ABCD\x1b]52;c;Zm9v\x07", id="escape-in-user-code"),
        pytest.param("verification_uri", "javascript:alert(1)", id="javascript-uri"),
        pytest.param("verification_uri_complete", "http://evil.example/x", id="plain-http-uri"),
    ],
)
async def test_hostile_text_from_the_server_is_never_shown(field: str, value: str) -> None:
    """A user code with terminal escapes, or a non-https URI, is refused before show_code."""
    reply: dict[str, object] = {
        "device_code": "dc",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://as.example/device",
        field: value,
    }
    shown: list[DeviceCode] = []
    with pytest.raises(ol.UnsupportedServer):
        await device_login(
            "https://as.example",
            client_id="c",
            show_code=shown.append,
            transport=_scripted(reply, []),  # type: ignore[arg-type]
        )
    assert shown == []


async def test_an_interval_of_zero_does_not_poll_in_a_tight_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """interval: 0 (or missing) means the default 5 s (RFC 8628 §3.2), not a busy loop."""
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr("oauth_loopback._login._device.anyio.sleep", sleep)
    reply: dict[str, object] = {
        "device_code": "dc",
        "user_code": "ABCD-EFGH",
        "verification_uri": "https://as.example/device",
        "interval": 0,
    }
    token = await device_login(
        "https://as.example",
        client_id="c",
        show_code=lambda code: None,
        transport=_scripted(reply, []),  # type: ignore[arg-type]
    )
    assert token.access_token == "at"
    assert waits == [_device.DEFAULT_INTERVAL]
