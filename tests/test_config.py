"""CallbackConfig: defaults, validation, and the config flag as clients spell it."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oauth_loopback as ol


def test_default_is_ephemeral_on_ipv4_loopback() -> None:
    """The default config asks the OS for a port on 127.0.0.1, never the legacy port."""
    cfg = ol.CallbackConfig()
    assert cfg.port is None
    assert cfg.ephemeral
    assert cfg.host == "127.0.0.1"
    assert cfg.path == "/callback"
    assert cfg.redirect_uri is None
    assert cfg.timeout == 300.0


def test_config_is_frozen() -> None:
    """A config cannot be changed after validation."""
    cfg = ol.CallbackConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.port = 1  # type: ignore[misc]


def test_legacy_port_constant_and_constructor() -> None:
    """legacy() is the opt-in for the well-known fixed port 19876."""
    assert ol.LEGACY_CALLBACK_PORT == 19876
    assert ol.CallbackConfig.legacy().port == 19876
    assert ol.CallbackConfig.legacy(path="/cb").path == "/cb"


def test_port_zero_means_ephemeral() -> None:
    """port=0 is the same as port=None."""
    assert ol.CallbackConfig(port=0).port is None


@pytest.mark.parametrize(
    ("uri", "host", "port", "path"),
    [
        pytest.param("http://127.0.0.1:8765/oauth/cb", "127.0.0.1", 8765, "/oauth/cb", id="ipv4"),
        pytest.param("http://[::1]:8765/cb", "::1", 8765, "/cb", id="ipv6"),
        pytest.param("http://localhost:8765/cb", "localhost", 8765, "/cb", id="localhost"),
        pytest.param("http://127.0.0.1/cb", "127.0.0.1", None, "/cb", id="no-port-is-ephemeral"),
        pytest.param("http://127.0.0.1:0/cb", "127.0.0.1", None, "/cb", id="port-0-is-ephemeral"),
        pytest.param("http://127.0.0.1:9000", "127.0.0.1", 9000, "/", id="no-path-is-root"),
        pytest.param("HTTP://LOCALHOST:9000/x", "localhost", 9000, "/x", id="case-insensitive"),
    ],
)
def test_redirect_uri_decides_host_port_and_path(
    uri: str, host: str, port: int | None, path: str
) -> None:
    """An explicit redirect URI's host, port and path are the ones used."""
    cfg = ol.CallbackConfig(redirect_uri=uri)
    assert (cfg.host, cfg.port, cfg.path) == (host, port, path)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        pytest.param({"host": "0.0.0.0"}, "not a loopback", id="wildcard-host"),
        pytest.param({"host": "192.168.1.10"}, "not a loopback", id="lan-host"),
        pytest.param({"host": "example.com"}, "not a loopback", id="dns-host"),
        pytest.param({"redirect_uri": "https://127.0.0.1:8765/cb"}, "https", id="https"),
        pytest.param({"redirect_uri": "http://example.com:8765/cb"}, "loopback", id="remote-uri"),
        pytest.param({"redirect_uri": "http://0.0.0.0:8765/cb"}, "loopback", id="wildcard-uri"),
        pytest.param(
            {"redirect_uri": "http://127.0.0.1:80@evil.example/"}, "user information", id="userinfo"
        ),
        pytest.param({"redirect_uri": "http://127.0.0.1:8765/cb#frag"}, "fragment", id="fragment"),
        pytest.param({"redirect_uri": "http://127.0.0.1:8765/cb?x=1"}, "query", id="query"),
        pytest.param({"redirect_uri": "myapp://callback"}, "http://", id="custom-scheme"),
        pytest.param({"redirect_uri": "http://127.0.0.1:99999/cb"}, "port", id="port-out-of-range"),
        pytest.param({"port": 70000}, "65535", id="port-too-big"),
        pytest.param({"port": -1}, "65535", id="port-negative"),
        pytest.param({"port": "19876"}, "int", id="port-string"),
        pytest.param({"port": True}, "int", id="port-bool"),
        pytest.param({"path": "callback"}, "starting with '/'", id="relative-path"),
        pytest.param({"path": "/cb?x"}, "may not contain", id="path-with-query"),
        pytest.param({"timeout": 0}, "positive", id="zero-timeout"),
        pytest.param({"timeout": float("nan")}, "positive", id="nan-timeout"),
        pytest.param({"read_timeout": -1}, "positive", id="negative-read-timeout"),
        pytest.param({"max_connections": 0}, "positive", id="no-connections"),
        pytest.param({"app_name": " "}, "app_name", id="blank-app-name"),
        pytest.param(
            {"port": 1234, "redirect_uri": "http://127.0.0.1:8765/cb"},
            "disagrees",
            id="port-conflict",
        ),
        pytest.param(
            {"host": "::1", "redirect_uri": "http://127.0.0.1:8765/cb"},
            "disagrees",
            id="host-conflict",
        ),
    ],
)
def test_invalid_settings_are_refused_with_a_reason(kwargs: dict[str, Any], fragment: str) -> None:
    """Bad settings raise InvalidCallbackConfig (a ValueError) saying what is wrong."""
    with pytest.raises(ol.InvalidCallbackConfig, match=None) as info:
        ol.CallbackConfig(**kwargs)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, ol.OAuthLoopbackError)
    assert fragment in str(info.value)


def test_ipv6_host_spellings_are_normalised() -> None:
    """'[::1]' and '::1' both mean the IPv6 loopback."""
    assert ol.CallbackConfig(host="[::1]").host == "::1"
    assert ol.CallbackConfig(host="0:0:0:0:0:0:0:1").host == "::1"


def test_matching_port_and_redirect_uri_are_accepted() -> None:
    """Giving the same port twice is not a conflict."""
    cfg = ol.CallbackConfig(port=8765, redirect_uri="http://127.0.0.1:8765/cb")
    assert cfg.port == 8765


@pytest.mark.parametrize(
    ("mapping", "expected"),
    [
        pytest.param({"callbackPort": 19876}, {"port": 19876}, id="camel-callbackPort"),
        pytest.param({"callback_port": 19876}, {"port": 19876}, id="snake-callback_port"),
        pytest.param({"port": 19876}, {"port": 19876}, id="plain-port"),
        pytest.param({"callbackPort": None}, {"port": None}, id="null-port-is-ephemeral"),
        pytest.param(
            {"redirectUri": "http://127.0.0.1:8765/cb"},
            {"port": 8765, "path": "/cb", "redirect_uri": "http://127.0.0.1:8765/cb"},
            id="camel-redirectUri",
        ),
        pytest.param(
            {"redirect_uri": "http://[::1]:8765/cb"}, {"host": "::1", "port": 8765}, id="snake"
        ),
        pytest.param(
            {"appName": "My CLI", "timeout": 30}, {"app_name": "My CLI", "timeout": 30.0}, id="more"
        ),
        pytest.param({}, {"port": None}, id="empty"),
    ],
)
def test_from_mapping_accepts_both_spellings(
    mapping: dict[str, Any], expected: dict[str, Any]
) -> None:
    """The config flag works as a client's JSON config spells it, camelCase or snake_case."""
    cfg = ol.CallbackConfig.from_mapping(mapping)
    for key, value in expected.items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize(
    ("mapping", "fragment"),
    [
        pytest.param({"callbackPrt": 1}, "Allowed keys", id="typo"),
        pytest.param({"callbackPort": 1, "port": 2}, "given twice", id="two-spellings"),
        pytest.param(
            {"redirectUri": "x", "redirect_uri": "x"}, "given twice", id="two-uri-spellings"
        ),
        pytest.param({"callbackPort": "19876"}, "must be int", id="string-port"),
        pytest.param({"callbackPort": 19876.0}, "must be int", id="float-port"),
        pytest.param({"timeout": "300"}, "must be", id="string-timeout"),
        pytest.param({1: 2}, "Allowed keys", id="non-string-key"),
    ],
)
def test_from_mapping_refuses_unknown_duplicate_and_mistyped(
    mapping: dict[Any, Any], fragment: str
) -> None:
    """Unknown keys, double spellings and wrong types raise InvalidCallbackConfig naming the fix."""
    with pytest.raises(ol.InvalidCallbackConfig) as info:
        ol.CallbackConfig.from_mapping(mapping)
    assert fragment in str(info.value)


def test_from_mapping_lists_the_allowed_keys() -> None:
    """The unknown-key message lists the keys a user can write."""
    with pytest.raises(ol.InvalidCallbackConfig) as info:
        ol.CallbackConfig.from_mapping({"bogus": 1})
    for key in ("callbackPort", "redirectUri", "redirect_uri", "port"):
        assert key in str(info.value)


def test_from_mapping_requires_a_mapping() -> None:
    """A list is not a config."""
    with pytest.raises(ol.InvalidCallbackConfig):
        ol.CallbackConfig.from_mapping([("port", 1)])  # type: ignore[arg-type]


def _path_refused_before(path: str) -> bool:
    """The path rule as it was written before the bind-path work (one loop per character)."""
    if any(c in path for c in "?#") or any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in path):
        return True
    dot_segments = {".", "..", "%2e", "%2e%2e", ".%2e", "%2e."}
    return any(segment.lower() in dot_segments for segment in path.split("/"))


@settings(max_examples=400, deadline=None)
@given(
    st.text(
        alphabet=st.sampled_from(
            ["a", "Z", "0", "/", ".", "%", "2", "e", "E", "?", "#", " ", "\t", "\x7f", "é", "-"]
        ),
        max_size=16,
    )
)
def test_path_rule_refuses_exactly_what_it_always_refused(tail: str) -> None:
    """A path is refused for '?', '#', spaces, controls, non-ASCII and dot segments, as before."""
    path = "/" + tail
    try:
        ol.CallbackConfig(path=path)
    except ol.InvalidCallbackConfig:
        refused = True
    else:
        refused = False
    assert refused == _path_refused_before(path)


def test_from_mapping_spellings_are_the_same_on_every_call() -> None:
    """The accepted keys are the same on the first call and later ones (built once)."""
    first = ol.CallbackConfig.from_mapping({"callbackPath": "/a", "appName": "x"})
    again = ol.CallbackConfig.from_mapping({"callback_path": "/a", "app_name": "x"})
    assert first == again
    with pytest.raises(
        ol.InvalidCallbackConfig, match="Allowed keys: appName, app_name, callbackHost"
    ):
        ol.CallbackConfig.from_mapping({"callbackPathh": "/a"})
