"""authorize(): the whole native-app login in one call, on top of the loopback receiver.

This is the one module that touches authlib (which ships no ``py.typed``): everything it
returns is typed here, and nothing untyped leaves it. It is imported lazily (``import
oauth_loopback`` stays free of authlib, httpx2 and trio; the attributes below are served by
``oauth_loopback.__getattr__``).

The steps, each with the standard that justifies it:

1. bind the receiver (RFC 8252 §7.3: an ephemeral loopback port; §8.3: ``127.0.0.1``);
2. discover the server's metadata (RFC 8414 §3.1, path-aware, then OpenID Connect
   Discovery), and insist its ``issuer`` is the one asked for (RFC 8414 §3.3);
3. register a client with the *live* redirect URI when no ``client_id`` is given (RFC 7591);
4. build the authorization URL with PKCE S256 (RFC 7636 §4.2) through authlib, guarded
   against authlib dropping PKCE silently, plus ``resource`` (RFC 8707 §2);
5. open the browser (refusing crafted URLs) and wait for the callback, checking ``iss`` when
   the server advertises it (RFC 9207 §2.4), racing a terminal paste prompt if asked;
6. exchange the code with ``grant_type=authorization_code``, the same redirect URI and the
   verifier (RFC 6749 §4.1.3, RFC 7636 §4.5).
"""

from __future__ import annotations

import inspect
import json
import logging
import math
import os
import ssl
import stat
import sys
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit, urlunsplit

import anyio
import anyio.to_thread
import httpx2
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import AsyncOAuth2Client, OAuthError
from authlib.oauth2.rfc7636 import create_s256_code_challenge

from ._browser import BrowserOpener, check_browser_url, launch_browser
from ._browser import _is_loopback_host as is_loopback_host
from ._config import CallbackConfig
from ._core import AuthorizationResponse
from ._errors import AuthorizationError, CallbackRejected, IssuerMismatch, OAuthLoopbackError
from ._server import CallbackReceiver, PendingCallback, open_receiver

__all__ = [
    "BrowserUnavailable",
    "DiscoveryError",
    "ReadLine",
    "RegistrationError",
    "ServerUnreachable",
    "ShowURL",
    "StepCallback",
    "Token",
    "TokenError",
    "UnsupportedServer",
    "authorize",
    "discovery_urls",
]

logger = logging.getLogger("oauth_loopback.oauth")

#: ``show_url(url)``: display the authorization URL to the user (sync; return value ignored).
ShowURL = Callable[[str], object]
#: ``read_line(prompt) -> line``: show ``prompt`` and return one line the user typed, or
#: ``None`` when the input has ended (EOF). Sync or async.
ReadLine = Callable[[str], "str | None | Awaitable[str | None]"]
#: ``on_step(name, detail)``: called after each step (``bind``, ``discovery``,
#: ``registration``, ``redirect``, ``callback``, ``token``). ``detail`` never holds a secret.
StepCallback = Callable[[str, str], object]

# RFC 7636 §4.1: 43-128 characters; authlib's documented idiom gives 48.
_VERIFIER_LENGTH: Final = 48
# Each HTTP request to the authorization server; a person is waiting, so fail in seconds
# rather than hang, but leave room for slow identity providers.
_HTTP_TIMEOUT: Final = httpx2.Timeout(30.0, connect=10.0)
# Token and metadata documents are small; a megabyte is far more than any real one.
_MAX_DOCUMENT: Final = 1024 * 1024
# Token fields whose values may be shown: everything else (tokens, secrets) is redacted.
_SHOWN_TOKEN_FIELDS: Final = frozenset({"token_type", "expires_in", "scope"})
_PASTE_PROMPT: Final = (
    "Paste the address your browser was redirected to (it starts with {prefix}), then press "
    "Enter: "
)


# --- errors -------------------------------------------------------------------------------


class DiscoveryError(OAuthLoopbackError):
    """No usable authorization server metadata was found (RFC 8414, OpenID Discovery).

    ``tried`` lists every URL asked, each with why it was not used.
    """

    def __init__(self, issuer: str, tried: tuple[tuple[str, str], ...]) -> None:
        self.issuer = issuer
        self.tried = tried
        lines = "; ".join(f"{url} ({why})" for url, why in tried)
        super().__init__(
            f"Could not discover the authorization server metadata of {issuer!r}. Tried: "
            f"{lines}. Check the issuer URL (it must be exactly the server's 'issuer', "
            f"RFC 8414 §3.3) and that the server publishes "
            f"/.well-known/oauth-authorization-server or /.well-known/openid-configuration."
        )

    def __reduce__(self) -> tuple[type[DiscoveryError], tuple[str, tuple[tuple[str, str], ...]]]:
        return (type(self), (self.issuer, self.tried))


class UnsupportedServer(OAuthLoopbackError):
    """The server (or the issuer URL) cannot give a safe native-app login; the message says why."""


class RegistrationError(OAuthLoopbackError):
    """Dynamic client registration (RFC 7591) failed; ``error`` is from RFC 7591 §3.2.2."""

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        description: str | None = None,
        status_code: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.description = description
        self.status_code = status_code

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_registration_error,
            (str(self), self.error, self.description, self.status_code),
        )


def _rebuild_registration_error(
    message: str, error: str | None, description: str | None, status_code: int | None
) -> RegistrationError:
    return RegistrationError(
        message, error=error, description=description, status_code=status_code
    )


class ServerUnreachable(OAuthLoopbackError, ConnectionError):
    """An HTTP request to the authorization server failed before it answered."""


class BrowserUnavailable(OAuthLoopbackError):
    """No browser could be opened and the URL was not shown anywhere the user could copy it."""


class TokenError(AuthorizationError):
    """The token endpoint refused the code (RFC 6749 §5.2).

    ``error``, ``description`` and ``uri`` are the response's ``error``,
    ``error_description`` and ``error_uri``; ``status_code`` is the HTTP status. For a reply
    that is not an RFC 6749 token response at all, ``error`` is ``"invalid_token_response"``.
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        uri: str | None = None,
        *,
        status_code: int | None = None,
        iss: str | None = None,
        state: str | None = None,
        params: Mapping[str, str] = MappingProxyType({}),
    ) -> None:
        super().__init__(error, description, uri, iss=iss, state=state, params=params)
        self.status_code = status_code
        detail = f": {description}" if description else ""
        status = f" (HTTP {status_code})" if status_code is not None else ""
        self.args = (
            f"The token endpoint refused the authorization code with error={error!r}{detail}"
            f"{status}. Start the login again; if it keeps failing, check the client_id, "
            f"client_secret and redirect URI registered with the server.",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_token_error,
            (self.error, self.description, self.uri, self.status_code),
        )


def _rebuild_token_error(
    error: str, description: str | None, uri: str | None, status_code: int | None
) -> TokenError:
    return TokenError(error, description, uri, status_code=status_code)


# --- the token ------------------------------------------------------------------------------


class Token(Mapping[str, object]):
    """A token response (RFC 6749 §5.1): a read-only mapping of everything the server sent.

    The common fields are typed properties. ``repr()`` shows ``token_type``, ``expires_in``
    and ``scope`` only; every other value (access and refresh tokens, ID tokens) is redacted,
    because reprs end up in logs and tracebacks. ``dict(token)`` gives the raw fields, e.g.
    to store them.
    """

    __slots__ = ("_data", "received_at")

    def __init__(self, data: Mapping[str, object], *, received_at: float | None = None) -> None:
        access_token = data.get("access_token")
        token_type = data.get("token_type")
        if not isinstance(access_token, str) or not access_token:
            msg = "A token response needs a non-empty string 'access_token' (RFC 6749 §5.1)."
            raise ValueError(msg)
        if not isinstance(token_type, str) or not token_type:
            msg = "A token response needs a non-empty string 'token_type' (RFC 6749 §5.1)."
            raise ValueError(msg)
        self._data: Mapping[str, object] = MappingProxyType(dict(data))
        #: ``time.time()`` when the token arrived; ``expires_at`` counts from it.
        self.received_at = time.time() if received_at is None else received_at

    def __getitem__(self, key: str) -> object:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    @property
    def access_token(self) -> str:
        value = self._data["access_token"]
        assert isinstance(value, str)  # noqa: S101  (checked in __init__)
        return value

    @property
    def token_type(self) -> str:
        value = self._data["token_type"]
        assert isinstance(value, str)  # noqa: S101  (checked in __init__)
        return value

    @property
    def expires_in(self) -> int | None:
        """Seconds the access token lives, if the server said (some send it as a string)."""
        value = self._data.get("expires_in")
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value
        if isinstance(value, float) and math.isfinite(value):
            return int(value)
        if isinstance(value, str) and value.isdecimal():
            return int(value)
        return None

    @property
    def expires_at(self) -> float | None:
        """``received_at + expires_in`` (a ``time.time()`` value), or None."""
        expires_in = self.expires_in
        return None if expires_in is None else self.received_at + expires_in

    @property
    def refresh_token(self) -> str | None:
        value = self._data.get("refresh_token")
        return value if isinstance(value, str) and value else None

    @property
    def scope(self) -> str | None:
        """The granted scope; RFC 6749 §5.1 lets the server omit it when it is as requested."""
        value = self._data.get("scope")
        return value if isinstance(value, str) else None

    def __repr__(self) -> str:
        shown = ", ".join(
            f"{key}={self._data[key]!r}" if key in _SHOWN_TOKEN_FIELDS else f"{key}=<redacted>"
            for key in self._data
        )
        return f"Token({shown})"

    __str__ = __repr__


# --- discovery (RFC 8414, OpenID Connect Discovery) -----------------------------------------


def _check_issuer(issuer: object) -> str:
    """An issuer is an https URL with no query or fragment (RFC 8414 §2); http on loopback
    is allowed for local test servers such as :mod:`oauth_loopback.testing`."""
    if not isinstance(issuer, str):
        msg = f"issuer must be the authorization server's URL as a string, not {issuer!r}."
        raise TypeError(msg)
    parts = urlsplit(issuer)
    host = parts.hostname or ""
    if parts.scheme == "http" and is_loopback_host(host):
        pass
    elif parts.scheme != "https" or not host:
        msg = (
            f"The issuer {issuer!r} is not an https URL. An authorization server's issuer "
            f"must use https (RFC 8414 §2; plain http only on a loopback test server). Pass "
            f"the server's issuer, such as 'https://auth.example.com'."
        )
        raise UnsupportedServer(msg)
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        msg = (
            f"The issuer {issuer!r} has a query or fragment, which an issuer identifier may "
            f"not have (RFC 8414 §2). Pass the server's issuer, such as "
            f"'https://auth.example.com'."
        )
        raise UnsupportedServer(msg)
    if parts.username is not None or parts.password is not None:
        msg = f"The issuer {issuer!r} contains user information ('user@host'); remove it."
        raise UnsupportedServer(msg)
    return issuer


def discovery_urls(issuer: str) -> list[str]:
    """The metadata URLs tried for ``issuer``, in order.

    RFC 8414 §3.1 inserts the well-known segment between host and path (its trailing ``/``
    removed); OpenID Connect Discovery 1.0 §4 appends it to the path, and RFC 8414 §5 also
    defines the inserted form for ``openid-configuration``. The order follows the MCP
    authorization specification. For an issuer without a path the forms coincide.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")

    def at(new_path: str) -> str:
        return urlunsplit((parts.scheme, parts.netloc, new_path, "", ""))

    if not path:
        return [
            at("/.well-known/oauth-authorization-server"),
            at("/.well-known/openid-configuration"),
        ]
    return [
        at(f"/.well-known/oauth-authorization-server{path}"),
        at(f"/.well-known/openid-configuration{path}"),
        at(f"{path}/.well-known/openid-configuration"),
    ]


class _Metadata:
    """The fields of the server's metadata this flow uses, validated."""

    def __init__(self, url: str, document: Mapping[str, object]) -> None:
        self.url = url
        self.document = document
        self.authorization_endpoint = _endpoint(document, "authorization_endpoint", url)
        self.token_endpoint = _endpoint(document, "token_endpoint", url)
        registration = document.get("registration_endpoint")
        self.registration_endpoint = (
            _endpoint(document, "registration_endpoint", url) if registration else None
        )
        # RFC 9207 §3: the server promises to send iss in every authorization response.
        self.issues_iss = document.get("authorization_response_iss_parameter_supported") is True
        self.code_challenge_methods = _string_list(document, "code_challenge_methods_supported")
        self.response_types = _string_list(document, "response_types_supported")


def _string_list(document: Mapping[str, object], key: str) -> list[str] | None:
    value = document.get(key)
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        msg = f"The server's metadata field {key!r} is not a list of strings (RFC 8414 §2)."
        raise UnsupportedServer(msg)
    return [str(v) for v in value]


def _endpoint(document: Mapping[str, object], key: str, source: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        msg = (
            f"The metadata at {source} has no {key!r}, which this login needs (RFC 8414 §2). "
            f"The server may not support the authorization code flow."
        )
        raise UnsupportedServer(msg)
    parts = urlsplit(value)
    secure = parts.scheme == "https" or (
        parts.scheme == "http" and is_loopback_host(parts.hostname or "")
    )
    if not secure or not parts.hostname:
        msg = (
            f"The metadata at {source} gives {key}={value!r}, which is not an https URL. "
            f"Codes and tokens are only sent over https (RFC 6749 §3.1, §3.2; plain http "
            f"only to a loopback test server)."
        )
        raise UnsupportedServer(msg)
    return value


def _json_object(response: httpx2.Response) -> dict[str, object] | None:
    if len(response.content) > _MAX_DOCUMENT:
        return None
    try:
        value = json.loads(response.content)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


# --- the authlib client, typed --------------------------------------------------------------


class _Client:
    """A typed wrapper around authlib's ``AsyncOAuth2Client`` (an ``httpx2.AsyncClient``)."""

    def __init__(
        self,
        *,
        issuer: str,
        redirect_uri: str,
        scope: str | None,
        transport: httpx2.AsyncBaseTransport | None,
    ) -> None:
        parts = urlsplit(issuer)
        loopback = is_loopback_host(parts.hostname or "")
        # Proxy settings from the environment must never divert loopback traffic.
        trust_env = not loopback
        verify: ssl.SSLContext | bool = True
        if loopback and parts.scheme == "http":
            # A local (test) server over plain http needs no CA store, and loading one costs
            # tens of milliseconds. A context that trusts no CA fails closed should its
            # metadata ever name an https endpoint.
            verify = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self._token_reply: httpx2.Response | None = None
        self._authlib: Any = AsyncOAuth2Client(
            client_id=None,
            redirect_uri=redirect_uri,
            scope=scope,
            # Without this authlib leaves PKCE out of the URL silently; _check_pkce guards it.
            code_challenge_method="S256",
            transport=transport,
            trust_env=trust_env,
            verify=verify,
            timeout=_HTTP_TIMEOUT,
            follow_redirects=False,
        )
        self._authlib.register_compliance_hook("access_token_response", self._keep_token_reply)

    async def __aenter__(self) -> _Client:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._authlib.aclose()

    def set_client(
        self, client_id: str, client_secret: str | None, auth_method: str | None
    ) -> None:
        self._authlib.client_id = client_id
        self._authlib.client_secret = client_secret
        if auth_method is None:
            auth_method = "client_secret_basic" if client_secret else "none"
        self._authlib.token_endpoint_auth_method = auth_method

    async def get(self, url: str) -> httpx2.Response:
        response = await self._authlib.request(
            "GET", url, withhold_token=True, headers={"Accept": "application/json"}
        )
        assert isinstance(response, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        return response

    async def post_json(self, url: str, body: Mapping[str, object]) -> httpx2.Response:
        response = await self._authlib.request(
            "POST", url, withhold_token=True, json=dict(body),
            headers={"Accept": "application/json"},
        )
        assert isinstance(response, httpx2.Response)  # noqa: S101  (httpx2.AsyncClient)
        return response

    def authorization_url(
        self, endpoint: str, *, state: str, code_verifier: str, resource: str | None
    ) -> str:
        extra: dict[str, str] = {}
        if resource is not None:
            extra["resource"] = resource  # RFC 8707 §2.1
        url, _ = self._authlib.create_authorization_url(
            endpoint, state=state, code_verifier=code_verifier, **extra
        )
        return str(url)

    def _keep_token_reply(self, response: httpx2.Response) -> httpx2.Response:
        # authlib keeps only error and error_description of an error reply, and discards
        # the status; keep the reply to report all RFC 6749 §5.2 fields.
        self._token_reply = response
        return response

    async def exchange(
        self,
        token_endpoint: str,
        *,
        code: str,
        code_verifier: str,
        redirect_uri: str,
        resource: str | None,
    ) -> Token:
        extra: dict[str, str] = {}
        if resource is not None:
            extra["resource"] = resource  # RFC 8707 §2.2
        self._token_reply = None
        try:
            # grant_type explicit: authlib would guess it and remember the guess.
            # redirect_uri: identical to the authorization request's (RFC 6749 §4.1.3).
            await self._authlib.fetch_token(
                token_endpoint,
                grant_type="authorization_code",
                code=code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
                **extra,
            )
        except httpx2.TransportError as exc:
            msg = (
                f"Could not reach the token endpoint {token_endpoint} ({type(exc).__name__}: "
                f"{exc}). Check the network (and proxy settings), then log in again."
            )
            raise ServerUnreachable(msg) from exc
        except (OAuthError, httpx2.HTTPStatusError, ValueError) as exc:
            raise self._token_error(exc) from exc
        reply = self._token_reply
        document = _json_object(reply) if reply is not None else None
        if document is None:  # pragma: no cover  (authlib raised above)
            raise _invalid_token_response(reply, "the reply is not a JSON object")
        try:
            return Token(document)
        except ValueError as exc:
            raise _invalid_token_response(reply, str(exc)) from exc

    def _token_error(self, exc: Exception) -> TokenError:
        reply = self._token_reply
        document = _json_object(reply) if reply is not None else None
        status = reply.status_code if reply is not None else None
        if document is not None and isinstance(document.get("error"), str):
            return TokenError(
                str(document["error"]),
                _optional_str(document.get("error_description")),
                _optional_str(document.get("error_uri")),
                status_code=status,
            )
        if isinstance(exc, OAuthError) and reply is None:
            # authlib refused before sending (e.g. a missing code).
            return TokenError(str(exc.error), _optional_str(exc.description))
        return _invalid_token_response(reply, "the reply is not an RFC 6749 token response")


def _optional_str(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _invalid_token_response(reply: httpx2.Response | None, why: str) -> TokenError:
    status = reply.status_code if reply is not None else None
    return TokenError("invalid_token_response", why, status_code=status)


def _check_pkce(url: str, code_verifier: str) -> None:
    """authlib adds PKCE only when told ``code_challenge_method="S256"``; never send a URL
    without it (RFC 7636 §4.3; OAuth 2.1 and the MCP specification require PKCE)."""
    params = parse_qsl(urlsplit(url).query, keep_blank_values=True)
    challenges = [v for k, v in params if k == "code_challenge"]
    methods = [v for k, v in params if k == "code_challenge_method"]
    if challenges != [create_s256_code_challenge(code_verifier)] or methods != ["S256"]:
        msg = (
            "The authorization URL was built without a PKCE S256 code_challenge (RFC 7636), "
            "so it was not used. This is a bug in oauth-loopback or in the installed authlib; "
            "please report it with the authlib version."
        )
        raise OAuthLoopbackError(msg)


# --- the paste fallback ---------------------------------------------------------------------


class _TerminalLines:
    """The default ``read_line`` of ``paste=True``: prompt on stderr, one line from stdin.

    stdin is read without blocking the event loop and without a thread: we wait until the
    descriptor is readable, then ``os.read`` what is there. A thread blocked in
    ``readline()`` would outlive the login (asyncio's worker threads are not daemons, so the
    program could not exit until the user pressed Enter). On Windows, where console handles
    cannot be polled, a worker thread is used after all.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._eof = False

    async def __call__(self, prompt: str) -> str | None:
        # paste=True asks for terminal interaction; stderr keeps stdout clean for program
        # output (``oauth-loopback login --json`` prints the token there).
        sys.stderr.write(prompt)
        sys.stderr.flush()
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return None  # no usable stdin (e.g. replaced, closed): nothing will be pasted
        while b"\n" not in self._buffer and not self._eof:
            chunk = await self._read(fd)
            if chunk:
                self._buffer += chunk
            else:
                self._eof = True
        if not self._buffer:
            return None
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode("utf-8", "replace")

    @staticmethod
    async def _read(fd: int) -> bytes:
        if sys.platform == "win32":  # pragma: no cover
            return await anyio.to_thread.run_sync(os.read, fd, 65536, abandon_on_cancel=True)
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a file never blocks, and cannot be polled
            await anyio.wait_readable(fd)
        return os.read(fd, 65536)


async def _read_pasted(read_line: ReadLine, prompt: str) -> str | None:
    result = read_line(prompt)
    if inspect.isawaitable(result):
        result = await result
    if result is not None and not isinstance(result, str):
        msg = f"read_line must return a string or None, not {type(result).__name__}."
        raise TypeError(msg)
    return result


async def _paste_loop(receiver: CallbackReceiver, read_line: ReadLine, first_prompt: str) -> None:
    """Ask for the pasted redirect address until one is accepted or the input ends."""
    prompt = first_prompt
    ask = _PASTE_PROMPT.format(prefix=receiver.redirect_uri)
    while True:
        line = await _read_pasted(read_line, prompt)
        if line is None:
            logger.info("paste input ended; still waiting for the browser's callback")
            return
        if not line.strip():
            prompt = ask
            continue
        try:
            receiver.deliver(line)
        except CallbackRejected as exc:
            # The same checks as a real request; tell the user why and ask again.
            prompt = f"That address was not accepted: {exc.message}\n{ask}"
            continue
        return


async def _wait_for_response(
    receiver: CallbackReceiver,
    pending: PendingCallback,
    wait_seconds: float | None,
    read_line: ReadLine | None,
    first_prompt: str,
) -> AuthorizationResponse:
    """The browser's callback, or a pasted address: whichever arrives first wins."""
    if read_line is None:
        return await pending.wait(wait_seconds)
    response: AuthorizationResponse | None = None
    failure: OAuthLoopbackError | None = None
    async with anyio.create_task_group() as tg:
        tg.start_soon(_paste_loop, receiver, read_line, first_prompt)
        try:
            response = await pending.wait(wait_seconds)
        except OAuthLoopbackError as exc:
            # Raised below, outside the task group, so the caller sees the typed error and
            # never an ExceptionGroup (DESIGN §3).
            failure = exc
        finally:
            tg.cancel_scope.cancel()
    if failure is not None:
        raise failure
    assert response is not None  # noqa: S101  (wait() returned)
    return response


# --- authorize ------------------------------------------------------------------------------


async def _discover(client: _Client, issuer: str) -> _Metadata:
    tried: list[tuple[str, str]] = []
    urls = discovery_urls(issuer)
    for index, url in enumerate(urls):
        try:
            response = await client.get(url)
        except httpx2.TransportError as exc:
            tried.append((url, f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__))
            # Every URL is on the same host: if it did not answer one, asking the others
            # would only multiply the wait (up to the connect timeout each).
            tried.extend((later, "not asked: the host did not answer") for later in urls[index + 1 :])
            break
        if response.status_code != 200:
            tried.append((url, f"HTTP {response.status_code}"))
            continue
        document = _json_object(response)
        if document is None:
            tried.append((url, "not a JSON object"))
            continue
        # RFC 8414 §3.3: the issuer in the metadata MUST be identical to the one asked
        # for, or the metadata MUST NOT be used (a mix-up or impersonation defence).
        if document.get("issuer") != issuer:
            tried.append((url, f"its issuer is {document.get('issuer')!r}, not {issuer!r}"))
            continue
        logger.debug("discovered metadata at %s", url)
        return _Metadata(url, document)
    raise DiscoveryError(issuer, tuple(tried))


def _given_metadata(metadata: Mapping[str, object], issuer: str) -> _Metadata:
    """Validate metadata passed by the caller (for servers without discovery)."""
    if not isinstance(metadata, Mapping):
        msg = f"metadata= must be a mapping such as {{'authorization_endpoint': ...}}, not {metadata!r}."
        raise TypeError(msg)
    given = metadata.get("issuer", issuer)
    if given != issuer:
        msg = (
            f"metadata= names issuer {given!r}, but authorize() was given {issuer!r}; they "
            f"must be identical (RFC 8414 §3.3). Pass the same issuer to both."
        )
        raise UnsupportedServer(msg)
    return _Metadata("the metadata= argument", {**metadata, "issuer": issuer})


def _check_server(metadata: _Metadata) -> None:
    methods = metadata.code_challenge_methods
    if methods is not None and "S256" not in methods:
        msg = (
            f"The authorization server lists code_challenge_methods_supported={methods}, "
            f"without S256 (metadata at {metadata.url}). oauth-loopback always uses PKCE "
            f"with S256 (RFC 7636 §4.2; 'plain' protects nothing), so it will not log in "
            f"here. Ask the server's operator to enable S256."
        )
        raise UnsupportedServer(msg)
    if methods is None:
        logger.info(
            "the server's metadata does not list code_challenge_methods_supported; "
            "sending PKCE S256 anyway"
        )
    response_types = metadata.response_types
    if response_types is not None and "code" not in response_types:
        msg = (
            f"The authorization server lists response_types_supported={response_types}, "
            f"without 'code' (metadata at {metadata.url}), so it offers no authorization code "
            f"flow for a native app."
        )
        raise UnsupportedServer(msg)


async def _register(
    client: _Client,
    metadata: _Metadata,
    redirect_uri: str,
    *,
    app_name: str,
    scope: str | None,
) -> tuple[str, str | None, str | None]:
    """RFC 7591 §3.1: register this app with the redirect URI it is really listening on.

    Returns (client_id, client_secret or None, token_endpoint_auth_method or None).
    """
    endpoint = metadata.registration_endpoint
    if endpoint is None:
        msg = (
            f"The authorization server does not offer dynamic client registration (no "
            f"registration_endpoint in {metadata.url}, RFC 7591). Register the app with the "
            f"server yourself and pass its client_id= (CLI: --client-id), with the redirect "
            f"URI pinned by port= / --port / --redirect-uri."
        )
        raise UnsupportedServer(msg)
    body: dict[str, object] = {
        "redirect_uris": [redirect_uri],
        # OpenID Connect Dynamic Client Registration §2: a native app, whose loopback
        # redirect URIs the server accepts on any port (RFC 8252 §7.3).
        "application_type": "native",
        # A public client: it keeps no secret; PKCE protects the code (RFC 8252 §8.4).
        "token_endpoint_auth_method": "none",
        "grant_types": ["authorization_code", "refresh_token"],
        "response_types": ["code"],
        "client_name": app_name,
    }
    if scope is not None:
        body["scope"] = scope
    try:
        response = await client.post_json(endpoint, body)
    except httpx2.TransportError as exc:
        msg = (
            f"Could not reach the registration endpoint {endpoint} ({type(exc).__name__}: "
            f"{exc}). Check the network (and proxy settings), or pass a pre-registered "
            f"client_id=."
        )
        raise ServerUnreachable(msg) from exc
    document = _json_object(response)
    if response.status_code not in (200, 201) or document is None:
        error = _optional_str(document.get("error")) if document else None
        description = _optional_str(document.get("error_description")) if document else None
        said = f" error={error!r}" + (f": {description}" if description else "") if error else ""
        msg = (
            f"Dynamic client registration at {endpoint} failed with HTTP "
            f"{response.status_code}{said} (RFC 7591 §3.2.2). Register the app with the "
            f"server yourself and pass its client_id= (CLI: --client-id)."
        )
        raise RegistrationError(
            msg, error=error, description=description, status_code=response.status_code
        )
    client_id = document.get("client_id")
    if not isinstance(client_id, str) or not client_id:
        msg = f"The registration response from {endpoint} has no client_id (RFC 7591 §3.2.1)."
        raise RegistrationError(msg, status_code=response.status_code)
    registered = document.get("redirect_uris")
    if isinstance(registered, list) and redirect_uri not in registered:
        # RFC 7591 §3.2.1 lets the server change what we asked for; a login with another
        # redirect URI would fail at the server, so say so now.
        msg = (
            f"The server registered the client with redirect_uris={registered}, not the "
            f"receiver's {redirect_uri}. Register the app yourself with a fixed port "
            f"(port= / --port) and pass client_id=."
        )
        raise RegistrationError(msg, status_code=response.status_code)
    return (
        client_id,
        _optional_str(document.get("client_secret")),
        _optional_str(document.get("token_endpoint_auth_method")),
    )


def _check_present_iss(iss: str | None, issuer: str) -> None:
    """RFC 9207 §2.4: an ``iss`` that is present must match, even when the server's metadata
    does not advertise it (when it does, the receiver has already insisted on it)."""
    if iss is not None and iss != issuer:
        raise IssuerMismatch(issuer, iss)


def _step(on_step: StepCallback | None, name: str, detail: str) -> None:
    if on_step is not None:
        on_step(name, detail)


async def authorize(
    issuer: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    config: CallbackConfig | None = None,
    open_browser: BrowserOpener | None = None,
    # The issue's contract: a login must not hang forever by default (like wait(timeout=),
    # the deliberate exception to ASYNC109, implemented with the receiver's cancel scope).
    timeout: float | None = None,  # noqa: ASYNC109
    paste: bool = False,
    show_url: ShowURL | None = None,
    read_line: ReadLine | None = None,
    on_step: StepCallback | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    metadata: Mapping[str, object] | None = None,
) -> Token:
    """Log in through the user's browser and return the token: the whole native-app flow.

    Opens a loopback receiver (``config``; ephemeral ``127.0.0.1`` port by default),
    discovers the server's metadata, registers a client when ``client_id`` is None, sends
    the browser to the authorization URL (PKCE S256, a fresh ``state``, ``resource``),
    waits for the callback (checking ``iss`` when the server advertises RFC 9207) and
    exchanges the code.

    :param issuer: the authorization server's issuer URL, exactly as its metadata states it.
    :param client_id: a pre-registered client; None registers one (RFC 7591) with the live
        redirect URI, as a public native client named ``config.app_name``.
    :param client_secret: only for a pre-registered confidential client.
    :param scope: space-separated scopes to ask for.
    :param resource: the RFC 8707 resource indicator (MCP: the server URL), sent in the
        authorization and token requests.
    :param open_browser: ``open_browser(url)``, sync or async; default :func:`webbrowser.open`
        in a worker thread. Only ``https`` URLs (or ``http`` to loopback) are ever handed to
        it (:class:`UnsafeBrowserURL` otherwise).
    :param timeout: seconds to wait for the callback; None uses ``config.timeout`` (300 s).
    :param paste: also ask on the terminal for the address the browser was redirected to
        (for SSH, containers, Codespaces: the browser runs elsewhere and cannot reach this
        loopback). Whichever arrives first, the callback or the paste, wins. With
        ``paste=True`` no browser is launched unless ``open_browser`` is given, and the
        first prompt contains the authorization URL unless ``show_url`` is given.
    :param show_url: ``show_url(url)`` is called with the authorization URL before the
        browser opens, so a user whose browser did not open can copy it.
        **Decision:** the default (None) shows it nowhere, because library code never
        prints and the URL carries this login's ``state``, which is never logged (only the
        endpoint is, at INFO). Apps pass a printer (the CLI writes it to stderr). When the
        browser reports it could not open and nothing shows the URL, waiting would be
        pointless, so :class:`BrowserUnavailable` is raised instead.
    :param read_line: the paste prompt's input, ``read_line(prompt) -> str | None`` (sync
        or async; None means end of input). Default: the prompt goes to stderr and the line
        comes from stdin, read without blocking the event loop.
    :param on_step: ``on_step(name, detail)`` after each step: ``bind``, ``discovery``,
        ``registration``, ``redirect``, ``callback``, ``token``. ``detail`` has no secrets.
    :param transport: an ``httpx2`` transport for every request to the server (tests pass
        ``httpx2.MockTransport``). Environment proxies are ignored for loopback issuers.
    :param metadata: the server's metadata, for servers that publish none (RFC 8414 is
        optional): at least ``authorization_endpoint`` and ``token_endpoint``, and
        ``registration_endpoint`` when ``client_id`` is None. Discovery is skipped; an
        ``issuer`` in it must equal ``issuer``.

    :raises DiscoveryError: no metadata at any well-known URL (each is named, with why);
        pass ``metadata=`` for a server that publishes none.
    :raises UnsupportedServer: the issuer is not https, or the server offers no safe login
        (no S256 PKCE, no code flow, no registration endpoint without ``client_id``).
    :raises RegistrationError: dynamic registration was refused.
    :raises UnsafeBrowserURL: the authorization endpoint is not https (nor loopback http).
    :raises BrowserUnavailable: no browser opened and the URL was shown nowhere.
    :raises AuthorizationDenied: the user (or policy) said no.
    :raises AuthorizationError: the server answered the authorization with another error.
    :raises IssuerMismatch: RFC 9207: the response came from another issuer.
    :raises CallbackTimeout: nothing arrived within ``timeout``.
    :raises TokenError: the token endpoint refused the code (RFC 6749 §5.2 fields).
    :raises ServerUnreachable: the registration or token endpoint did not answer.
    :raises CallbackPortInUse: the fixed port in ``config`` is busy.
    """
    issuer = _check_issuer(issuer)
    if client_secret is not None and client_id is None:
        msg = "client_secret= needs the client_id= it belongs to."
        raise ValueError(msg)
    if resource is not None and (not isinstance(resource, str) or not resource):
        msg = f"resource must be a URL string such as 'https://mcp.example.com', not {resource!r}."
        raise ValueError(msg)
    if timeout is not None and (
        isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0
    ):
        msg = f"timeout must be a positive number of seconds (or None), not {timeout!r}."
        raise ValueError(msg)
    metadata_given = None if metadata is None else _given_metadata(metadata, issuer)
    if config is None:
        config = CallbackConfig()
    if paste and read_line is None:
        read_line = _TerminalLines()
    elif not paste:
        read_line = None
    async with open_receiver(config) as receiver:
        redirect_uri = receiver.redirect_uri
        _step(on_step, "bind", f"receiver listening on {redirect_uri}")
        async with _Client(
            issuer=issuer, redirect_uri=redirect_uri, scope=scope, transport=transport
        ) as client:
            if metadata_given is None:
                server = await _discover(client, issuer)
            else:
                server = metadata_given
            _check_server(server)
            _step(on_step, "discovery", f"metadata from {server.url}")
            if client_id is None:
                client_id, client_secret, auth_method = await _register(
                    client, server, redirect_uri, app_name=config.app_name, scope=scope
                )
                _step(on_step, "registration", f"registered a native public client for {redirect_uri}")
            else:
                auth_method = None
                _step(on_step, "registration", "skipped: using the given client_id")
            client.set_client(client_id, client_secret, auth_method)

            # RFC 9207 §2.4: when the server promises iss, a response without it (or with
            # another) is refused by the receiver as a possible mix-up attack.
            pending = receiver.expect(issuer=issuer if server.issues_iss else None)
            code_verifier = generate_token(_VERIFIER_LENGTH)
            url = client.authorization_url(
                server.authorization_endpoint,
                state=pending.state,
                code_verifier=code_verifier,
                resource=resource,
            )
            _check_pkce(url, code_verifier)
            check_browser_url(url)
            endpoint = server.authorization_endpoint.partition("?")[0]
            first_prompt = _PASTE_PROMPT.format(prefix=redirect_uri)
            if show_url is not None:
                show_url(url)
            elif paste:
                first_prompt = f"Open this address in a browser to sign in:\n\n  {url}\n\n{first_prompt}"
            if not paste or open_browser is not None:
                opened = await launch_browser(url, open_browser)
                if not opened and show_url is None and not paste:
                    msg = (
                        "Could not open a browser for the login, and the authorization URL "
                        "was not shown anywhere. Pass show_url= (e.g. print) so the user can "
                        "open it by hand, or paste=True for a session without a browser "
                        "(CLI: --no-browser)."
                    )
                    raise BrowserUnavailable(msg)
                logger.info("sent the browser to %s", endpoint)
                _step(on_step, "redirect", f"browser sent to {endpoint}")
            else:
                _step(on_step, "redirect", f"waiting for the user to open {endpoint}")
            try:
                response = await _wait_for_response(
                    receiver, pending, timeout, read_line, first_prompt
                )
            except AuthorizationError as exc:
                _check_present_iss(exc.iss, issuer)
                raise
            _check_present_iss(response.iss, issuer)
            checked = ", iss checked (RFC 9207)" if server.issues_iss else ""
            _step(on_step, "callback", f"authorization code received{checked}")
            token = await client.exchange(
                server.token_endpoint,
                code=response.code,
                code_verifier=code_verifier,
                redirect_uri=redirect_uri,
                resource=resource,
            )
            _step(on_step, "token", f"{token.token_type} token from {server.token_endpoint}")
            return token


for _cls in (
    BrowserUnavailable, DiscoveryError, RegistrationError, ServerUnreachable, Token, TokenError,
    UnsupportedServer,
):
    _cls.__module__ = "oauth_loopback"
authorize.__module__ = "oauth_loopback"
del _cls
