"""CallbackConfig: where the receiver listens, validated up front.

Decisions recorded here (README, 'Decisions we made', has the rest):

* ``port=None`` or ``0`` is ephemeral: the OS picks a free port and the redirect URI is built
  from the bound socket (RFC 8252 §7.3 requires servers to accept any loopback port).
* Only loopback hosts are accepted: ``127.0.0.1`` (default), ``::1`` and ``localhost``
  (RFC 8252 §8.3 recommends the IP literal; ``localhost`` is an opt-in for servers that insist).
* ``redirect_uri``, when given, decides host, port and path. A ``port=`` that disagrees with
  it, or a non-default ``host=``/``path=`` that disagrees, is refused rather than guessed.
* A redirect URI with a query string is refused: the receiver matches its path exactly and
  would have to merge the server's parameters with yours (RFC 6749 §3.1.2 allows it, but no
  native client we know needs it).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ._errors import InvalidCallbackConfig
from ._loopback import is_loopback_host

__all__ = ["LEGACY_CALLBACK_PORT", "CallbackConfig"]

#: The fixed port a well-known MCP client hard-codes. Use it only when the authorization
#: server's registration pins it: :meth:`CallbackConfig.legacy`.
LEGACY_CALLBACK_PORT = 19876

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PATH = "/callback"
# A person needs time to type a password and pass 2FA; five minutes matches the lifetime
# most servers give authorization codes' parent sessions (and the MCP SDK's examples).
DEFAULT_TIMEOUT = 300.0
# Browsers open a handful of parallel connections (preconnect, favicon); 64 leaves room
# for them and for stray local probes, and the idle-longest is evicted when full.
DEFAULT_MAX_CONNECTIONS = 64
# A browser sends its request within milliseconds of connecting; 10 s covers slow machines.
DEFAULT_READ_TIMEOUT = 10.0

_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


@dataclass(frozen=True)
class CallbackConfig:
    """Where and how the loopback receiver listens.

    >>> CallbackConfig().port is None          # ephemeral: the OS picks the port
    True
    >>> CallbackConfig.legacy().port           # opt-in fixed port; loud when busy
    19876
    >>> CallbackConfig(redirect_uri="http://127.0.0.1:8765/oauth/cb").path
    '/oauth/cb'
    """

    #: ``None`` (or 0): ephemeral. An int: that fixed port, or :class:`CallbackPortInUse`.
    port: int | None = None
    #: ``127.0.0.1``, ``::1`` or ``localhost`` (binds both families on one port).
    host: str = DEFAULT_HOST
    #: The path the authorization server redirects to.
    path: str = DEFAULT_PATH
    #: An explicit ``http://<loopback>[:port]/path``; decides host, port and path.
    redirect_uri: str | None = None
    #: Default deadline of :meth:`PendingCallback.wait`, in seconds; ``None``: no deadline.
    timeout: float | None = DEFAULT_TIMEOUT
    #: Shown on the browser page: "you can close this tab and return to <app_name>".
    app_name: str = "the application"
    #: Concurrent connections kept; when full, the one idle longest is closed.
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Seconds a connection may take to send its request before it is closed.
    read_timeout: float = DEFAULT_READ_TIMEOUT
    #: Sticky port (opt-in, ephemeral mode only): try this port first, e.g. the one a stored
    #: client registration names, and fall back to an OS-chosen port (logged at INFO) when
    #: it is busy. Unlike ``port=``, never raises :class:`CallbackPortInUse`.
    prefer_port: int | None = None
    #: Forwarded setups (Codespaces, ``ssh -L``, a reverse proxy): the redirect URI the browser
    #: can reach, ``{port}`` filled from the bound port, while the receiver still binds
    #: loopback only. https, or http to a loopback host (an SSH port forward). Its path is the
    #: receiver's path; its host is accepted in ``Host`` besides the loopback names.
    public_redirect_uri: str | None = None

    def __post_init__(self) -> None:
        port = _check_port(self.port, "port")
        host = _check_host(self.host)
        path = _check_path(self.path, "path")
        if self.redirect_uri is not None:
            uri_host, uri_port, uri_path = _parse_redirect_uri(self.redirect_uri)
            if port is not None and uri_port is not None and port != uri_port:
                msg = (
                    f"port={port} disagrees with redirect_uri {self.redirect_uri!r}, which "
                    f"names port {uri_port}. Give the port in one place only."
                )
                raise InvalidCallbackConfig(msg)
            if host not in (DEFAULT_HOST, uri_host):
                msg = (
                    f"host={host!r} disagrees with redirect_uri {self.redirect_uri!r}. "
                    f"Give the host in one place only."
                )
                raise InvalidCallbackConfig(msg)
            if path not in (DEFAULT_PATH, uri_path):
                msg = (
                    f"path={path!r} disagrees with redirect_uri {self.redirect_uri!r}. "
                    f"Give the path in one place only."
                )
                raise InvalidCallbackConfig(msg)
            host, path = uri_host, uri_path
            port = uri_port if uri_port is not None else port
        object.__setattr__(self, "port", port)
        object.__setattr__(self, "host", host)
        object.__setattr__(self, "path", path)
        prefer_port = _check_port(self.prefer_port, "prefer_port")
        if prefer_port is not None and port is not None:
            msg = (
                f"prefer_port={prefer_port} cannot be combined with the fixed port {port} "
                f"(from port=/callbackPort or the redirect_uri). prefer_port falls back to "
                f"another port when busy, a fixed port never does: keep one of the two."
            )
            raise InvalidCallbackConfig(msg)
        object.__setattr__(self, "prefer_port", prefer_port)
        if self.timeout is not None:
            object.__setattr__(self, "timeout", _check_seconds(self.timeout, "timeout"))
        object.__setattr__(self, "read_timeout", _check_seconds(self.read_timeout, "read_timeout"))
        if self.public_redirect_uri is not None:
            public_path = _check_public_redirect_uri(self.public_redirect_uri)
            if path not in (DEFAULT_PATH, public_path):
                msg = (
                    f"path={path!r} disagrees with public_redirect_uri "
                    f"{self.public_redirect_uri!r}: the forwarder passes the path on unchanged, "
                    f"so the receiver serves the public URI's path. Give the path in one place."
                )
                raise InvalidCallbackConfig(msg)
            object.__setattr__(self, "path", public_path)
        if not isinstance(self.app_name, str) or not self.app_name.strip():
            msg = f"app_name must be a non-empty string, not {self.app_name!r}."
            raise InvalidCallbackConfig(msg)
        if (
            not isinstance(self.max_connections, int)
            or isinstance(self.max_connections, bool)
            or self.max_connections < 1
        ):
            msg = f"max_connections must be a positive integer, not {self.max_connections!r}."
            raise InvalidCallbackConfig(msg)

    @property
    def ephemeral(self) -> bool:
        """True when the OS picks the port (the default)."""
        return self.port is None

    @classmethod
    def legacy(cls, **kwargs: Any) -> CallbackConfig:
        """The fixed port :data:`LEGACY_CALLBACK_PORT` (19876), for registrations that pin it.

        Opening a receiver with it raises :class:`CallbackPortInUse` when the port is busy;
        it never moves elsewhere.
        """
        return cls(port=LEGACY_CALLBACK_PORT, **kwargs)

    @classmethod
    def from_mapping(cls, mapping: Mapping[str, Any]) -> CallbackConfig:
        """Build a config from a client's JSON-style settings.

        Each field is accepted in snake_case and camelCase (``redirect_uri`` /
        ``redirectUri``); ``port``, ``host`` and ``path`` also as ``callbackPort`` /
        ``callback_port`` and so on, the spelling MCP clients use. Unknown keys, the same
        setting given twice, or a value of the wrong type raise :class:`InvalidCallbackConfig`
        naming the allowed keys.
        """
        if not isinstance(mapping, Mapping):
            msg = f"from_mapping() needs a mapping of settings, not {type(mapping).__name__}."
            raise InvalidCallbackConfig(msg)
        aliases = _ALIASES or _build_aliases()
        values: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in mapping.items():
            field = aliases.get(key) if isinstance(key, str) else None
            if field is None:
                msg = (
                    f"Unknown callback setting {key!r}. Allowed keys: {', '.join(sorted(aliases))}."
                )
                raise InvalidCallbackConfig(msg)
            if field in spelled:
                msg = (
                    f"The setting {field!r} is given twice, as {spelled[field]!r} and {key!r}. "
                    f"Keep one spelling."
                )
                raise InvalidCallbackConfig(msg)
            spelled[field] = key
            values[field] = _check_type(field, key, value)
        return cls(**values)


_FIELD_TYPES: dict[str, tuple[type, ...]] = {
    "port": (int, type(None)),
    "host": (str,),
    "path": (str,),
    "redirect_uri": (str, type(None)),
    "timeout": (int, float, type(None)),
    "app_name": (str,),
    "max_connections": (int,),
    "read_timeout": (int, float),
    "prefer_port": (int, type(None)),
    "public_redirect_uri": (str, type(None)),
}


# Every accepted spelling -> field name; built by the first from_mapping() (rebuilding it on
# every call was two thirds of the cost of a from_mapping(), docs/benchmarks.md).
_ALIASES: dict[str, str] = {}


def _build_aliases() -> dict[str, str]:
    aliases: dict[str, str] = {}
    for field in dataclasses.fields(CallbackConfig):
        aliases[field.name] = field.name
        aliases[_camel(field.name)] = field.name
    for name in ("port", "host", "path"):
        aliases[f"callback_{name}"] = name
        aliases[_camel(f"callback_{name}")] = name
    _ALIASES.update(aliases)
    return _ALIASES


def _check_type(field: str, key: str, value: object) -> object:
    allowed = _FIELD_TYPES[field]
    if isinstance(value, bool) or not isinstance(value, allowed):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in allowed)
        msg = f"The setting {key!r} must be {names}, not {type(value).__name__} ({value!r})."
        raise InvalidCallbackConfig(msg)
    return value


def _check_port(port: object, name: str) -> int | None:
    if port is None:
        return None
    if isinstance(port, bool) or not isinstance(port, int):
        msg = (
            f"{name} must be an int from 1 to 65535 (or None for an ephemeral port), not {port!r}."
        )
        raise InvalidCallbackConfig(msg)
    if port == 0:
        return None
    if not 0 < port < 65536:
        msg = f"{name} must be from 1 to 65535 (or None for an ephemeral port), not {port}."
        raise InvalidCallbackConfig(msg)
    return port


def _check_host(host: object) -> str:
    if not isinstance(host, str):
        msg = f"host must be a string, not {host!r}."
        raise InvalidCallbackConfig(msg)
    normalised = host.strip().lower()
    if normalised.startswith("[") and normalised.endswith("]"):
        normalised = normalised[1:-1]
    if normalised not in _LOOPBACK_HOSTS:
        # Other spellings of ::1 ("0:0:0:0:0:0:0:1"); ipaddress is loaded only for them.
        import ipaddress

        try:
            normalised = str(ipaddress.ip_address(normalised))
        except ValueError:
            pass
    if normalised not in _LOOPBACK_HOSTS and is_loopback_host(normalised):
        msg = (
            f"host {host!r} is a loopback address, but the receiver binds only 127.0.0.1 "
            f"(default), ::1 or localhost: the addresses a browser reaches for a redirect "
            f"URI registered the usual way (RFC 8252 §7.3). Use host='127.0.0.1'."
        )
        raise InvalidCallbackConfig(msg)
    if normalised not in _LOOPBACK_HOSTS:
        msg = (
            f"host {host!r} is not a loopback address. The receiver listens only on "
            f"127.0.0.1 (default), ::1 or localhost, so no other machine can reach it and the "
            f"redirect stays on this computer (RFC 8252 §7.3, §8.3)."
        )
        raise InvalidCallbackConfig(msg)
    return normalised


_DOT_SEGMENTS = frozenset({".", "..", "%2e", "%2e%2e", ".%2e", "%2e."})


def _check_path(path: object, name: str) -> str:
    if not isinstance(path, str) or not path.startswith("/"):
        msg = f"{name} must be a string starting with '/', such as '/callback', not {path!r}."
        raise InvalidCallbackConfig(msg)
    # Non-ASCII, controls and DEL (not isprintable), space, '?' and '#'; str methods, not a
    # loop over the characters: this runs for every config built.
    if not path.isascii() or not path.isprintable() or " " in path or "?" in path or "#" in path:
        msg = (
            f"{name} {path!r} may not contain '?', '#', spaces or non-ASCII characters; "
            f"percent-encode them or choose a plain path such as '/callback'."
        )
        raise InvalidCallbackConfig(msg)
    if ("." in path or "%" in path) and any(
        segment.lower() in _DOT_SEGMENTS for segment in path.split("/")
    ):
        # Browsers remove dot segments before sending (RFC 3986 §5.2.4), so a callback to
        # "/cb/../x" arrives as "/x" and would never match.
        msg = (
            f"{name} {path!r} contains '.' or '..' segments, which browsers remove before "
            f"sending the request, so the callback would never match. Use a plain path such "
            f"as '/callback'."
        )
        raise InvalidCallbackConfig(msg)
    return path


def _check_seconds(value: object, name: str) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        msg = f"{name} must be a positive number of seconds, not {value!r}."
        raise InvalidCallbackConfig(msg)
    return float(value)


def _parse_redirect_uri(uri: object) -> tuple[str, int | None, str]:
    """Return (host, port or None, path) of a loopback redirect URI, or refuse it."""
    if not isinstance(uri, str):
        msg = f"redirect_uri must be a string, not {uri!r}."
        raise InvalidCallbackConfig(msg)
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in uri):
        # urlsplit silently drops tabs and newlines ("…:80\n80/" becomes port 8080) and strips
        # leading spaces; what the server has registered would then differ from what we serve.
        msg = (
            f"redirect_uri {uri!r} contains spaces or control characters. Give it exactly as "
            f"registered with the authorization server, such as http://127.0.0.1:8765/callback."
        )
        raise InvalidCallbackConfig(msg)
    from urllib.parse import urlsplit  # only when a redirect_uri is given

    parts = urlsplit(uri)
    if parts.scheme != "http":
        why = (
            "https needs a certificate the browser trusts for a loopback address, which a "
            "native app cannot have"
            if parts.scheme == "https"
            else f"the scheme {parts.scheme!r} is not a loopback HTTP redirect"
        )
        msg = (
            f"redirect_uri {uri!r} must start with http:// ({why}; RFC 8252 §7.3, §8.3). "
            f"Use http://127.0.0.1:<port>/callback."
        )
        raise InvalidCallbackConfig(msg)
    if "@" in parts.netloc:
        msg = (
            f"redirect_uri {uri!r} contains user information ('...@'), which hides the real "
            f"host. Use http://127.0.0.1:<port>/callback."
        )
        raise InvalidCallbackConfig(msg)
    if parts.fragment or "#" in uri:
        msg = f"redirect_uri {uri!r} may not contain a fragment (RFC 6749 §3.1.2)."
        raise InvalidCallbackConfig(msg)
    if parts.query or "?" in uri:
        msg = (
            f"redirect_uri {uri!r} contains a query string; the receiver matches the path "
            f"exactly and does not support one. Use a plain path such as /callback."
        )
        raise InvalidCallbackConfig(msg)
    port_text = parts.netloc.rpartition("]")[2].rpartition(":")[2] if ":" in parts.netloc else ""
    if len(port_text) > 1 and port_text.startswith("0"):
        # "…:08765/" would be served and exchanged as "…:8765/", which the authorization
        # server compares as a different string (RFC 6749 §3.1.2.3).
        msg = (
            f"redirect_uri {uri!r} writes its port with a leading zero. Write the port "
            f"without it, as registered with the authorization server."
        )
        raise InvalidCallbackConfig(msg)
    try:
        port = parts.port
    except ValueError as exc:
        msg = f"redirect_uri {uri!r} has an invalid port: {exc}."
        raise InvalidCallbackConfig(msg) from exc
    if parts.hostname is None:
        msg = f"redirect_uri {uri!r} has no host. Use http://127.0.0.1:<port>/callback."
        raise InvalidCallbackConfig(msg)
    try:
        host = _check_host(parts.hostname)
    except InvalidCallbackConfig as exc:
        msg = (
            f"redirect_uri {uri!r} does not point at a loopback address. The receiver listens "
            f"only on 127.0.0.1, [::1] or localhost (RFC 8252 §7.3, §8.3)."
        )
        raise InvalidCallbackConfig(msg) from exc
    path = _check_path(parts.path or "/", "the redirect_uri path")
    return host, _check_port(port, "the redirect_uri port"), path


def _check_public_redirect_uri(template: object) -> str:
    """The path of a forwarded redirect URI template, or refuse it (and say why)."""
    if not isinstance(template, str) or not template:
        msg = f"public_redirect_uri must be a URL string such as 'https://{{port}}-box.example/callback', not {template!r}."
        raise InvalidCallbackConfig(msg)
    from urllib.parse import urlsplit

    filled = template.replace("{port}", "1")
    try:
        parts = urlsplit(filled)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        parts = None
    if parts is None or not parts.hostname or parts.username is not None:
        msg = (
            f"public_redirect_uri {template!r} is not a URL with a host (user info is not allowed)."
        )
        raise InvalidCallbackConfig(msg)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname)
    )
    if not secure:
        msg = (
            f"public_redirect_uri {template!r} must be https (the code crosses a network), or "
            f"http to a loopback address such as an 'ssh -L' forward (RFC 8252 §8.3)."
        )
        raise InvalidCallbackConfig(msg)
    if parts.query or parts.fragment:
        msg = (
            f"public_redirect_uri {template!r} may not have a query or fragment (RFC 6749 §3.1.2)."
        )
        raise InvalidCallbackConfig(msg)
    return _check_path(parts.path or "/", "the path of public_redirect_uri")
