"""Redirect URI and host tricks are refused when the config is built, each with its reason.

Decisions (SECURITY.md): only ``127.0.0.1``, ``::1`` and ``localhost`` are accepted; other
127/8 addresses (``127.0.0.2``), wildcard addresses, IPv4-mapped and scoped IPv6, numeric and
hex spellings, trailing dots and anything with userinfo, a fragment, a query, whitespace, dot
segments, https or a port with a leading zero are refused at config time. Any port from 1 to
65535 is accepted (RFC 8252 §7.3); a port the OS will not let us bind fails at open time.
"""

from __future__ import annotations

import pytest

import oauth_loopback as ol

REFUSED = [
    pytest.param("http://127.0.0.1:80@evil.example/cb", "user information", id="userinfo"),
    pytest.param("http://user@127.0.0.1:8765/cb", "user information", id="userinfo-loopback"),
    pytest.param("http://127.0.0.1:8765\\@evil.example/cb", "user information", id="backslash-at"),
    pytest.param("http://127.0.0.1:8765/cb#frag", "fragment", id="fragment"),
    pytest.param("http://127.0.0.1:8765/cb#", "fragment", id="empty-fragment"),
    pytest.param("http://127.0.0.1:8765/cb?next=x", "query string", id="query"),
    pytest.param("http://evil.example/cb", "loopback", id="foreign-host"),
    pytest.param("http://127.0.0.1.evil.example/cb", "loopback", id="loopback-prefix"),
    pytest.param("http://localhost.evil.example/cb", "loopback", id="localhost-prefix"),
    pytest.param("http://localhost./cb", "loopback", id="trailing-dot"),
    pytest.param("http://0.0.0.0:8765/cb", "loopback", id="wildcard-v4"),
    pytest.param("http://[::]:8765/cb", "loopback", id="wildcard-v6"),
    pytest.param("http://127.0.0.2:8765/cb", "loopback", id="other-127-8"),
    pytest.param("http://127.1:8765/cb", "loopback", id="short-ipv4"),
    pytest.param("http://2130706433:8765/cb", "loopback", id="decimal-ipv4"),
    pytest.param("http://0x7f.0.0.1:8765/cb", "loopback", id="hex-ipv4"),
    pytest.param("http://[::ffff:127.0.0.1]:8765/cb", "loopback", id="v4-mapped"),
    pytest.param("http://[::1%25lo]:8765/cb", "loopback", id="scoped-v6"),
    pytest.param("http://%31%32%37.0.0.1:8765/cb", "loopback", id="percent-host"),
    pytest.param("https://127.0.0.1:8765/cb", "certificate", id="https"),
    pytest.param("ftp://127.0.0.1:8765/cb", "http://", id="ftp"),
    pytest.param("//127.0.0.1:8765/cb", "http://", id="scheme-relative"),
    pytest.param("http:127.0.0.1:8765/cb", "no host", id="no-slashes"),
    pytest.param("http:///cb", "no host", id="empty-host"),
    pytest.param("http://127.0.0.1:65536/cb", "invalid port", id="port-too-big"),
    pytest.param("http://127.0.0.1:-1/cb", "invalid port", id="negative-port"),
    pytest.param("http://127.0.0.1:+80/cb", "invalid port", id="signed-port"),
    pytest.param("http://127.0.0.1:\u0668\u0660/cb", "invalid port", id="arabic-digit-port"),
    pytest.param("http://127.0.0.1:08765/cb", "leading zero", id="leading-zero-port"),
    pytest.param("http://127.0.0.1:87\n65/cb", "control characters", id="newline-in-port"),
    pytest.param("http://127.0.0.1:8765/ca\tllback", "control characters", id="tab-in-path"),
    pytest.param(" http://127.0.0.1:8765/cb", "control characters", id="leading-space"),
    pytest.param("http://127.0.0.1:8765/cb\x00", "control characters", id="nul"),
    pytest.param("http://127.0.0.1:8765/cb/../x", "'..' segments", id="dot-dot"),
    pytest.param("http://127.0.0.1:8765/./cb", "'..' segments", id="dot"),
    pytest.param("http://127.0.0.1:8765/cb/%2E%2e/x", "'..' segments", id="encoded-dot-dot"),
    pytest.param("http://127.0.0.1:8765/c\u00e9", "non-ASCII", id="non-ascii-path"),
]


@pytest.mark.parametrize(("uri", "reason"), REFUSED)
def test_redirect_uri_trick_is_refused_with_its_reason(uri: str, reason: str) -> None:
    """A redirect URI that could send the code elsewhere or never match is refused, saying why."""
    with pytest.raises(ol.InvalidCallbackConfig) as info:
        ol.CallbackConfig(redirect_uri=uri)
    assert reason in str(info.value)
    assert "redirect_uri" in str(info.value)  # names the setting to fix


@pytest.mark.parametrize(("uri", "reason"), REFUSED)
def test_redirect_uri_trick_is_refused_from_a_mapping(uri: str, reason: str) -> None:
    """The client-config spelling (redirectUri) goes through the very same checks."""
    with pytest.raises(ol.InvalidCallbackConfig) as info:
        ol.CallbackConfig.from_mapping({"redirectUri": uri})
    assert reason in str(info.value)


ACCEPTED = [
    pytest.param("http://127.0.0.1:8765/cb", "127.0.0.1", 8765, "/cb", id="v4"),
    pytest.param("http://[::1]:8765/cb", "::1", 8765, "/cb", id="v6"),
    pytest.param("http://[0:0:0:0:0:0:0:1]:8765/cb", "::1", 8765, "/cb", id="v6-long-form"),
    pytest.param("http://localhost:8765/cb", "localhost", 8765, "/cb", id="localhost"),
    pytest.param("HTTP://LOCALHOST:8765/cb", "localhost", 8765, "/cb", id="upper-case"),
    pytest.param("http://127.0.0.1/cb", "127.0.0.1", None, "/cb", id="no-port-ephemeral"),
    pytest.param("http://127.0.0.1:0/cb", "127.0.0.1", None, "/cb", id="port-zero-ephemeral"),
    pytest.param("http://127.0.0.1:1/cb", "127.0.0.1", 1, "/cb", id="port-1"),
    pytest.param("http://127.0.0.1:65535/cb", "127.0.0.1", 65535, "/cb", id="port-65535"),
    pytest.param("http://127.0.0.1:8765", "127.0.0.1", 8765, "/", id="no-path"),
    pytest.param("http://127.0.0.1:8765/a%20b", "127.0.0.1", 8765, "/a%20b", id="encoded-space"),
]


@pytest.mark.parametrize(("uri", "host", "port", "path"), ACCEPTED)
def test_plain_loopback_redirect_uri_is_accepted(
    uri: str, host: str, port: int | None, path: str
) -> None:
    """A plain loopback http:// URI (any port, RFC 8252 §7.3) gives its host, port and path."""
    config = ol.CallbackConfig(redirect_uri=uri)
    assert (config.host, config.port, config.path) == (host, port, path)


@pytest.mark.parametrize(
    "host",
    ["0.0.0.0", "::", "[::]", "::ffff:127.0.0.1", "", "example.com", "192.168.1.2", "x.localhost"],
)
def test_non_loopback_host_is_refused(host: str) -> None:
    """host= accepts only 127.0.0.1, ::1 and localhost; wildcards and LAN addresses are refused."""
    with pytest.raises(ol.InvalidCallbackConfig, match="not a loopback address"):
        ol.CallbackConfig(host=host)


def test_other_loopback_address_is_refused_with_the_host_to_use() -> None:
    """127.0.0.2 is loopback, but the receiver binds only the hosts browsers are sent to."""
    with pytest.raises(
        ol.InvalidCallbackConfig, match=r"binds only 127\.0\.0\.1.*host='127\.0\.0\.1'"
    ):
        ol.CallbackConfig(host="127.0.0.2")


def test_privileged_port_is_accepted_at_config_time() -> None:
    """Ports below 1024 are valid loopback ports (RFC 8252 §7.3); whether we may bind is the OS's call."""
    assert ol.CallbackConfig(port=80).port == 80
    assert ol.CallbackConfig(redirect_uri="http://127.0.0.1:80/cb").port == 80
