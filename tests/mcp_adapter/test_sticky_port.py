"""CallbackConfig.prefer_port (the sticky port) and how the receiver binds it."""

from __future__ import annotations

import logging
import socket
from collections.abc import Iterator

import pytest

from oauth_loopback import CallbackConfig, InvalidCallbackConfig, open_receiver


@pytest.mark.parametrize(
    ("mapping", "prefer"),
    [
        pytest.param({"preferPort": 8765}, 8765, id="camelCase"),
        pytest.param({"prefer_port": 8765}, 8765, id="snake_case"),
        pytest.param({"preferPort": None}, None, id="null"),
        pytest.param({"preferPort": 0}, None, id="zero-is-none"),
        pytest.param(
            {"preferPort": 8765, "redirectUri": "http://127.0.0.1/cb"}, 8765, id="portless-uri"
        ),
    ],
)
def test_prefer_port_from_mapping(mapping: dict[str, object], prefer: int | None) -> None:
    """prefer_port is read in both spellings and stays an ephemeral-mode preference."""
    config = CallbackConfig.from_mapping(mapping)
    assert config.prefer_port == prefer
    assert config.port is None


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        pytest.param({"port": 19876, "prefer_port": 8765}, "cannot be combined", id="with-port"),
        pytest.param(
            {"redirect_uri": "http://127.0.0.1:9000/cb", "prefer_port": 8765},
            "cannot be combined",
            id="with-uri-port",
        ),
        pytest.param({"prefer_port": 70000}, "prefer_port", id="too-big"),
        pytest.param({"prefer_port": True}, "prefer_port", id="bool"),
    ],
)
def test_prefer_port_refused(kwargs: dict[str, object], words: str) -> None:
    """A fixed port plus prefer_port, or a bad prefer_port, is refused with the setting named."""
    with pytest.raises(InvalidCallbackConfig, match=words):
        CallbackConfig(**kwargs)  # type: ignore[arg-type]


def test_prefer_port_with_callback_port_mapping_refused() -> None:
    """callbackPort (the legacy pin) and preferPort together are refused, never silently merged."""
    with pytest.raises(InvalidCallbackConfig, match="cannot be combined"):
        CallbackConfig.from_mapping({"callbackPort": 19876, "preferPort": 8765})
    with pytest.raises(InvalidCallbackConfig, match="preferPort"):
        CallbackConfig.from_mapping({"preferPort": "8765"})


@pytest.fixture
def held_port() -> Iterator[int]:
    """A port held by a listening socket for the duration of the test."""
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        yield int(holder.getsockname()[1])


@pytest.mark.anyio
async def test_free_preferred_port_is_used(caplog: pytest.LogCaptureFixture) -> None:
    """A free prefer_port is bound and the choice logged at INFO."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        async with open_receiver(CallbackConfig(prefer_port=port)) as receiver:
            assert receiver.port == port
            assert receiver.redirect_uri == f"http://127.0.0.1:{port}/callback"
    assert f"listening on the preferred callback port {port}" in caplog.text


@pytest.mark.anyio
async def test_busy_preferred_port_falls_back(
    held_port: int, caplog: pytest.LogCaptureFixture
) -> None:
    """A busy prefer_port falls back to an OS-chosen port, and says so at INFO."""
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        async with open_receiver(CallbackConfig(prefer_port=held_port)) as receiver:
            assert receiver.port not in (held_port, 0)
    assert f"preferred callback port {held_port} is unavailable (in use)" in caplog.text


@pytest.mark.anyio
async def test_busy_preferred_port_in_localhost_mode_falls_back(held_port: int) -> None:
    """In localhost mode a prefer_port busy on one family falls back too, to a port free on both."""
    async with open_receiver(CallbackConfig(host="localhost", prefer_port=held_port)) as receiver:
        assert receiver.port != held_port
        assert receiver.redirect_uri == f"http://localhost:{receiver.port}/callback"
