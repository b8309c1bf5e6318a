"""The errors oauth-loopback raises.

Everything the library raises on purpose derives from :class:`OAuthLoopbackError`::

    OAuthLoopbackError
    ├── InvalidCallbackConfig        (also ValueError)   you: a setting is wrong
    ├── CallbackPortInUse            (also OSError, errno EADDRINUSE)
    ├── CallbackTimeout              (also TimeoutError)
    ├── ReceiverClosed
    ├── AuthorizationError           the authorization server said error=... (RFC 6749 §4.1.2.1)
    │   └── AuthorizationDenied      ... error=access_denied: the user (or policy) said no
    ├── IssuerMismatch               RFC 9207: the response came from the wrong issuer
    └── CallbackRejected             the peer sent a request we answer with a 4xx page
        └── (status_hint: 400, 404, 405, 421, ...)

Like h11, we keep apart "you misused the API" (raised to the caller) and "the peer sent
something bad" (:class:`CallbackRejected`, answered with a 4xx page while the receiver keeps
serving; it reaches your code only through :meth:`CallbackReceiver.deliver`).
"""

from __future__ import annotations

import errno
from collections.abc import Mapping
from types import MappingProxyType

__all__ = [
    "AuthorizationDenied",
    "AuthorizationError",
    "CallbackPortInUse",
    "CallbackRejected",
    "CallbackTimeout",
    "InvalidCallbackConfig",
    "IssuerMismatch",
    "OAuthLoopbackError",
    "ReceiverClosed",
]

_EMPTY: Mapping[str, str] = MappingProxyType({})


class OAuthLoopbackError(Exception):
    """Base class of every error oauth-loopback raises on purpose."""


class InvalidCallbackConfig(OAuthLoopbackError, ValueError):
    """A :class:`CallbackConfig` setting is invalid; the message names it and the fix."""


class CallbackPortInUse(OAuthLoopbackError, OSError):
    """The fixed callback port you asked for is held by another socket.

    Raised by :func:`open_receiver` at once; nothing is retried on another port, because a
    server that pins the redirect URI would then send the browser to whoever holds this one.

    .. note:: This class inherits from :class:`OSError` (``errno`` is ``EADDRINUSE``) so code
       that already handles bind failures keeps working.
    """

    def __init__(self, port: int, host: str, holder: str | None = None) -> None:
        self.port = port
        self.host = host
        #: "pid 1234 (python3 -m http.server)" when the OS lets us see the holder.
        self.holder = holder
        who = f"It is held by {holder}." if holder else "Another process holds it."
        message = (
            f"Callback port {port} on {host} is already in use. {who} "
            f"oauth-loopback does not fall back to another port, because the authorization "
            f"server would then redirect your browser to whatever is listening on {port}. "
            f"To fix it: drop the fixed port (port=None, or remove 'callbackPort' from the "
            f"config) so the OS picks a free one, choose another with port= / 'callbackPort' / "
            f"redirect_uri=, or stop the process holding {port}."
        )
        OSError.__init__(self, errno.EADDRINUSE, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[CallbackPortInUse], tuple[int, str, str | None]]:
        return (type(self), (self.port, self.host, self.holder))


class CallbackTimeout(OAuthLoopbackError, TimeoutError):
    """No authorization response arrived before the wait's deadline.

    The state is forgotten: a late callback for it gets a 4xx page.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        message = (
            f"No authorization response arrived within {timeout:g} seconds. The login was "
            f"abandoned and its state forgotten. Finish the login in the browser sooner, or "
            f"pass a longer wait(timeout=...) / CallbackConfig(timeout=...)."
        )
        TimeoutError.__init__(self, message)
        self.message = message

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[CallbackTimeout], tuple[float]]:
        return (type(self), (self.timeout,))


class ReceiverClosed(OAuthLoopbackError):
    """The receiver was closed while (or before) this login was waiting."""


class AuthorizationError(OAuthLoopbackError):
    """The authorization server answered with ``error=...`` (RFC 6749 §4.1.2.1).

    The attributes use RFC 6749's vocabulary, as authlib does.
    """

    def __init__(
        self,
        error: str,
        description: str | None = None,
        uri: str | None = None,
        *,
        iss: str | None = None,
        state: str | None = None,
        params: Mapping[str, str] = _EMPTY,
    ) -> None:
        self.error = error
        self.description = description
        self.uri = uri
        self.iss = iss
        self.state = state
        self.params: Mapping[str, str] = MappingProxyType(dict(params))
        detail = f": {description}" if description else ""
        super().__init__(f"The authorization server refused the login with error={error!r}{detail}")

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_authorization_error,
            (
                type(self),
                self.error,
                self.description,
                self.uri,
                self.iss,
                self.state,
                dict(self.params),
            ),
        )


def _rebuild_authorization_error(
    cls: type[AuthorizationError],
    error: str,
    description: str | None,
    uri: str | None,
    iss: str | None,
    state: str | None,
    params: dict[str, str],
) -> AuthorizationError:
    return cls(error, description, uri, iss=iss, state=state, params=params)


class AuthorizationDenied(AuthorizationError):
    """The user or the server's policy denied the login (``error=access_denied``)."""


class IssuerMismatch(OAuthLoopbackError):
    """RFC 9207: the response's ``iss`` is missing or is not the issuer we expected.

    This is what a mix-up attack looks like, so the response is discarded.
    """

    def __init__(self, expected: str, received: str | None) -> None:
        self.expected = expected
        self.received = received
        if received is None:
            what = "carried no 'iss' parameter"
        else:
            what = f"came from issuer {received!r}"
        super().__init__(
            f"The authorization response {what}, but this login expected {expected!r} "
            f"(RFC 9207). The response was discarded. If the server is right, pass its exact "
            f"issuer to expect(issuer=...); if it does not send 'iss', do not pass issuer=."
        )

    def __reduce__(self) -> tuple[type[IssuerMismatch], tuple[str, str | None]]:
        return (type(self), (self.expected, self.received))


class CallbackRejected(OAuthLoopbackError):
    """A callback request was refused; the browser gets a page with ``status_hint``.

    The receiver answers these itself and keeps serving; you only see one when you feed a
    pasted URL through :meth:`CallbackReceiver.deliver`.
    """

    def __init__(
        self, message: str, status_hint: int = 400, *, title: str = "Not accepted"
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status_hint = status_hint
        self.title = title

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_rejected, (self.message, self.status_hint, self.title))


def _rebuild_rejected(message: str, status_hint: int, title: str) -> CallbackRejected:
    return CallbackRejected(message, status_hint, title=title)


# --- the login flow (oauth_loopback.authorize and friends) ---------------------------


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
    return RegistrationError(message, error=error, description=description, status_code=status_code)


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


class UnsafeBrowserURL(OAuthLoopbackError, ValueError):
    """The URL is not one we hand to a browser launcher (not https, nor http to loopback)."""


class InvalidAuthorizationURL(OAuthLoopbackError, ValueError):
    """The SDK handed ``redirect_handler`` a URL this receiver cannot complete a login for."""


# --- DPoP (RFC 9449) and ID tokens (OpenID Connect Core 1.0) ---------------------------------
#
#   OAuthLoopbackError
#   ├── DPoPError                    RFC 9449: sender-constrained tokens
#   │   ├── DPoPKeyInvalid           (also ValueError) a stored DPoP key cannot be used
#   │   └── DPoPProofRejected        a DPoP proof failed verification (server side, §4.3)
#   └── IDTokenError                 an ID token failed validation (OIDC Core §3.1.3.7)

__all__ += ["DPoPError", "DPoPKeyInvalid", "DPoPProofRejected", "IDTokenError"]


class DPoPError(OAuthLoopbackError):
    """Base class of the DPoP (RFC 9449) errors."""


class DPoPKeyInvalid(DPoPError, ValueError):
    """A stored DPoP key cannot be loaded: it must be a private P-256 JWK (RFC 9449 §4.2, ES256).

    The message says what is wrong with it; the fix is always to forget the stored login, so
    that the next login makes a fresh key (tokens bound to the old key are useless without it).
    """

    def __init__(self, detail: str) -> None:
        self.detail = detail
        self.message = (
            f"The stored DPoP key cannot be used: {detail}. Tokens bound to it cannot be used "
            f"either. Remove the stored login (clear its entry in the token store) so the next "
            f"login creates a new key."
        )
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[DPoPKeyInvalid], tuple[str]]:
        return (type(self), (self.detail,))


class DPoPProofRejected(DPoPError):
    """A DPoP proof failed one of the checks of RFC 9449 §4.3.

    Raised by the server-side verifier (the embedded test authorization server uses it).
    ``reason`` is a short stable code (``"typ"``, ``"alg-none"``, ``"signature"``, ``"htu"``,
    ``"replay"``, ``"nonce-missing"``, ...) and ``error`` the OAuth error code to answer with:
    ``use_dpop_nonce`` for a missing or stale nonce (RFC 9449 §8, §9), else
    ``invalid_dpop_proof`` (§7.1). The message is meant for the client's developer, as an
    ``error_description``.
    """

    #: The reasons that mean "sign again with the server's current nonce" (RFC 9449 §8, §9);
    #: every other reason is ``invalid_dpop_proof`` (§7.1).
    NONCE_REASONS = frozenset({"nonce-missing", "nonce-mismatch"})

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        self.error = "use_dpop_nonce" if reason in self.NONCE_REASONS else "invalid_dpop_proof"
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[DPoPProofRejected], tuple[str, str]]:
        return (type(self), (self.reason, self.message))


class IDTokenError(OAuthLoopbackError):
    """An ID token failed validation (OpenID Connect Core 1.0 §3.1.3.7); it was not used.

    ``reason`` is a short stable code: ``"malformed"``, ``"encrypted"``, ``"unsigned"``
    (``alg: none``), ``"symmetric"`` (HS256 and friends), ``"algorithm"``, ``"jwks"``,
    ``"unknown-kid"``, ``"no-key"``, ``"signature"``, ``"claims"``, ``"issuer"``,
    ``"audience"``, ``"azp"``, ``"expired"``, ``"not-yet-valid"``, ``"issued-in-future"``,
    ``"nonce"`` or ``"at-hash"``. The message says what was wrong and what fixes it.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        self.message = message
        super().__init__(message)

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[type[IDTokenError], tuple[str, str]]:
        return (type(self), (self.reason, self.message))


class TokenStoreError(OAuthLoopbackError):
    """A token store could not be read or written safely; nothing was overwritten.

    The message says what is wrong with which file (or keyring entry) and what fixes it
    (delete it, ``oauth-loopback logout ISSUER``, ``chmod 600``, ...). ``path`` is the file or
    directory concerned, or ``None`` for a keyring entry.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.path = path

    def __str__(self) -> str:
        return self.message

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_token_store_error, (self.message, self.path))


def _rebuild_token_store_error(message: str, path: str | None) -> TokenStoreError:
    return TokenStoreError(message, path=path)


__all__ += ["TokenStoreError"]  # kept apart from the list above so merges stay additive


class InputEnded(OAuthLoopbackError):
    """The paste prompt's input ended (Ctrl-D, a closed pipe) before an address was pasted."""

    def __init__(self) -> None:
        super().__init__(
            "The input ended before the address the browser was sent to was pasted, so the "
            "login stopped instead of waiting for nothing. Run it again and paste the whole "
            "address from the browser's address bar after signing in."
        )


__all__ += ["InputEnded"]


class ResourceDiscoveryError(OAuthLoopbackError):
    """No usable RFC 9728 protected resource metadata; ``tried`` lists each URL with why."""

    def __init__(self, message: str, *, tried: tuple[tuple[str, str], ...] = ()) -> None:
        super().__init__(message)
        self.tried = tried

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_resource_error, (str(self), self.tried))


def _rebuild_resource_error(
    message: str, tried: tuple[tuple[str, str], ...]
) -> ResourceDiscoveryError:
    return ResourceDiscoveryError(message, tried=tried)


__all__ += ["ResourceDiscoveryError"]


class PushedAuthorizationError(AuthorizationError):
    """The server refused the pushed authorization request (RFC 9126 §2.3): ``error`` says why."""

    def __init__(
        self, error: str, description: str | None = None, *, status_code: int | None = None
    ) -> None:
        super().__init__(error, description)
        self.status_code = status_code
        detail = f": {description}" if description else ""
        status = f" (HTTP {status_code})" if status_code is not None else ""
        self.args = (
            f"The server refused the pushed authorization request (RFC 9126) with "
            f"error={error!r}{detail}{status}. Check the client ID and scopes; to send the "
            f"request through the browser instead, pass par=False (only where the server does "
            f"not require PAR).",
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (_rebuild_par_error, (self.error, self.description, self.status_code))


def _rebuild_par_error(
    error: str, description: str | None, status_code: int | None
) -> PushedAuthorizationError:
    return PushedAuthorizationError(error, description, status_code=status_code)


__all__ += ["PushedAuthorizationError"]


class ClientRejected(OAuthLoopbackError):
    """The server refused the sign-in request before the user could act on it.

    Found by asking for the authorization URL once before the browser opens: an unknown or
    stale ``client_id``, or a redirect URI the server does not accept for it. ``error`` and
    ``description`` are set when the server redirected with an RFC 6749 §4.1.2.1 error.
    """

    def __init__(
        self,
        client_id: str,
        endpoint: str,
        *,
        status_code: int | None = None,
        error: str | None = None,
        description: str | None = None,
    ) -> None:
        self.client_id = client_id
        self.endpoint = endpoint
        self.status_code = status_code
        self.error = error
        self.description = description
        if error is not None:
            said = f"redirected with error={error!r}" + (f": {description}" if description else "")
        else:
            said = f"answered HTTP {status_code} (an error page)"
        super().__init__(
            f"The authorization server refused the sign-in request for client {client_id!r} "
            f"before the browser opened: {endpoint} {said}. The client ID may be unknown to the "
            f"server, or registered with another redirect URI. Register the client again (or "
            f"let oauth-loopback register one: pass no client_id), or pass the client_id the "
            f"server knows."
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (
            _rebuild_client_rejected,
            (self.client_id, self.endpoint, self.status_code, self.error, self.description),
        )


def _rebuild_client_rejected(
    client_id: str,
    endpoint: str,
    status_code: int | None,
    error: str | None,
    description: str | None,
) -> ClientRejected:
    return ClientRejected(
        client_id, endpoint, status_code=status_code, error=error, description=description
    )


__all__ += ["ClientRejected"]
