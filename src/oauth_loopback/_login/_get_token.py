"""get_token(): a valid access token in one call, logging in only when nothing else works.

The order, cheapest first:

1. **stored**: the store holds an access token with more than a minute left, for this client and
   covering the scope asked for: it is returned, and nothing is sent anywhere;
2. **refreshed**: else, under the store's lock (so that two processes never spend one rotating
   refresh token twice, RFC 9700 §4.14.2), the login is read *again* (another process may have
   refreshed meanwhile) and the refresh token is exchanged (RFC 6749 §6). The new tokens, and a
   rotated refresh token, are saved before the lock is released. The refresh grant has no
   redirect URI, so a loopback port that changed since the login costs nothing;
3. **logged in**: else (no refresh token, or the server refused it), still under the lock, an
   interactive :func:`authorize` with the stored registration (``authorize(client=...)``
   checks that the server takes it for this run's redirect URI and registers again, once, if
   not), and the result is saved.

Concurrent callers for one login queue on the lock: the first logs in or refreshes, the others
then find its token. Importing this module loads neither anyio, authlib nor httpx2, and none
of them is imported while a stored token is valid; the refresh and the login load them on
first use. So the blocking callers, ``oauth-loopback token`` and ``sync.get_token()``, read a
valid stored token of the library's own stores without any event loop (:func:`stored_now`,
:func:`get_token_now`): the same checks, the same file, the same ``Token``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import TYPE_CHECKING, Any, cast

from .._store._logs import LazyLogger
from .._store._protocol import TokenStore
from .._store._records import ClientRegistration, LoginKey, StoredLogin, StoredTokens
from ._token import Token

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

    import httpx2

    from .._config import CallbackConfig
    from .._store._file_store import FileTokenStore
    from .._store._keyring_store import KeyringTokenStore
    from .._store._memory_store import MemoryTokenStore
    from ._authorize import ShowURL
    from ._browser import BrowserOpener
    from ._device import ShowCode

__all__ = ["get_token", "get_token_now", "obtain", "stored_now"]

logger = LazyLogger("oauth_loopback.oauth")  # debug and info only: see _store._logs


async def get_token(
    issuer: str | None = None,
    *,
    store: TokenStore,
    client_id: str | None = None,
    client_secret: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    config: CallbackConfig | None = None,
    open_browser: BrowserOpener | None = None,
    timeout: float | None = None,
    paste: bool = False,
    show_url: ShowURL | None = None,
    browser_command: str | None = None,
    method: str = "browser",
    show_code: ShowCode | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    metadata: Mapping[str, object] | None = None,
) -> Token:
    """A valid access token for ``issuer`` (and ``resource``): stored, refreshed, or logged in.

    The stored token if it has more than a minute left; else a refresh with the stored
    refresh token, under ``store.lock()``; else an interactive :func:`authorize` that reuses
    the stored client registration when the server accepts it (RFC 8252 §7.3) and registers
    again when it does not. Whatever it obtains is saved in ``store`` before it returns.

    :param store: where logins are kept (:class:`FileTokenStore`, :class:`MemoryTokenStore`,
        :class:`KeyringTokenStore`, or your own :class:`TokenStore`).
    :param client_id: a pre-registered client, or the https URL of the app's client ID
        metadata document; stored tokens of another client are not used. None: the stored
        registration, or a new one (RFC 7591).
    :param client_secret: for a pre-registered confidential client (kept in the store).
    :param scope: space-separated scopes; a stored token that lacks one of them is not used
        (a refresh cannot widen the scope, RFC 6749 §6), and the user logs in again.
    :param resource: the RFC 8707 resource indicator; part of the store's key. With no
        ``issuer``, the resource-first login of the MCP specification: the issuer is found
        through the resource's RFC 9728 metadata (its 401 challenge, else the well-known
        URLs), its ``resource`` must match, and without ``scope`` the scope is the
        challenge's, else the metadata's ``scopes_supported``, else none.

    :param method: how the user logs in when a login is needed: ``"browser"`` (the loopback
        redirect) or ``"device"`` (RFC 8628: a code entered on any device; for SSH and
        containers), which needs ``show_code(code)`` to tell the user the code.

    ``config``, ``open_browser``, ``timeout``, ``paste``, ``show_url``, ``transport`` and
    ``metadata`` are :func:`authorize`'s, used when the user must log in (``transport`` and
    ``metadata`` also for the refresh). The returned :class:`Token`'s ``client`` is the stored
    registration.

    :raises TokenStoreError: the store cannot be read or written (the message names the fix).
    :raises TokenError: the server answered a refresh with a server error (not a refusal:
        a refused refresh token leads to a login instead).
    :raises ServerUnreachable: the server did not answer (no browser is opened then).
    :raises OAuthLoopbackError: whatever :func:`authorize` raises, when a login was needed.
    """
    if issuer is None:
        issuer, scope = await _issuer_for(resource, scope, store, transport)
    return await obtain(
        issuer,
        store=store,
        client_id=client_id,
        client_secret=client_secret,
        scope=scope,
        resource=resource,
        config=config,
        open_browser=open_browser,
        timeout=timeout,
        paste=paste,
        show_url=show_url,
        browser_command=browser_command,
        method=method,
        show_code=show_code,
        transport=transport,
        metadata=metadata,
        refused=None,
    )


async def obtain(
    issuer: str,
    *,
    store: TokenStore,
    client_id: str | None,
    client_secret: str | None,
    scope: str | None,
    resource: str | None,
    config: CallbackConfig | None,
    open_browser: BrowserOpener | None,
    timeout: float | None,
    paste: bool,
    show_url: ShowURL | None,
    browser_command: str | None = None,
    method: str = "browser",
    show_code: ShowCode | None = None,
    transport: httpx2.AsyncBaseTransport | None,
    metadata: Mapping[str, object] | None,
    refused: str | None,
) -> Token:
    """:func:`get_token`, plus ``refused``: an access token a resource server has just refused
    (HTTP 401), which is then not returned again even if its expiry says it is valid."""
    _check(store, issuer, client_id, client_secret, scope, method, show_code)
    key = LoginKey(issuer, resource)
    login = await store.load(key)
    tokens = _usable_tokens(login, client_id, scope, refused)
    if tokens is not None:
        return _stored_token(login, tokens)
    async with store.lock(key):
        # Read again inside the lock: another task or process may have refreshed or logged
        # in while we waited, and its refresh token may be the only one still valid.
        login = await store.load(key)
        stored = _usable_token(login, client_id, scope, refused)
        if stored is not None:
            logger.debug("another process refreshed the login for %s meanwhile", issuer)
            return stored
        return await _refresh_or_login(
            store,
            login,
            key,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            config=config,
            open_browser=open_browser,
            timeout=timeout,
            paste=paste,
            show_url=show_url,
            browser_command=browser_command,
            method=method,
            show_code=show_code,
            transport=transport,
            metadata=metadata,
        )


async def _issuer_for(
    resource: str | None,
    scope: str | None,
    store: TokenStore,
    transport: httpx2.AsyncBaseTransport | None,
) -> tuple[str, str | None]:
    """Resource-first (MCP): the issuer that guards ``resource`` (RFC 9728), and the scope.

    Discovery asks the resource every time (a few milliseconds), so that a resource that moved
    to another authorization server gets a login there, with credentials of its own, and never
    another server's stored tokens (the store is keyed by issuer and resource).
    """
    if resource is None:
        msg = (
            "get_token() needs the authorization server's issuer, or resource= (the protected "
            "resource's URL, such as an MCP server's) to discover it from (RFC 9728)."
        )
        raise TypeError(msg)
    from ._resource import discover_issuer

    metadata, selected = await discover_issuer(resource, transport=transport)
    logger.info(
        "the resource is guarded by %s (RFC 9728 metadata at %s)", metadata.issuer, metadata.url
    )
    return metadata.issuer, scope if scope is not None else selected


def _check(
    store: object,
    issuer: object,
    client_id: object,
    client_secret: object,
    scope: object,
    method: object,
    show_code: object,
) -> None:
    """The arguments of one call, checked before the store is read (every path, every caller)."""
    if not isinstance(store, TokenStore):
        msg = (
            f"store= must be a token store such as oauth_loopback.FileTokenStore() or "
            f"MemoryTokenStore() (the TokenStore protocol), not {type(store).__name__}."
        )
        raise TypeError(msg)
    if not isinstance(issuer, str) or not issuer:
        msg = f"issuer must be the authorization server's URL as a string, not {issuer!r}."
        raise TypeError(msg)
    for name, value in (("client_id", client_id), ("client_secret", client_secret)):
        if value is not None and (not isinstance(value, str) or not value):
            msg = f"{name}= must be a non-empty string or None."
            raise ValueError(msg)
    if client_secret is not None and client_id is None:
        msg = "client_secret= needs the client_id= it belongs to."
        raise ValueError(msg)
    if scope is not None and not isinstance(scope, str):
        msg = f"scope= takes space-separated scopes in one string, not {type(scope).__name__}."
        raise TypeError(msg)
    if method not in ("browser", "device"):
        msg = f"method= is 'browser' or 'device' (RFC 8628), not {method!r}."
        raise ValueError(msg)
    if method == "device" and show_code is None:
        msg = "method='device' needs show_code=, to tell the user the code and where to enter it."
        raise TypeError(msg)


def _client_for(login: StoredLogin | None, client_id: str | None) -> ClientRegistration | None:
    """The stored registration, if it is the client this call asks for."""
    if login is None or login.client is None:
        return None
    stored = login.client
    if client_id is None or stored.client_id == client_id:
        return stored
    # A metadata-document client_id falls back to dynamic registration at servers that do
    # not support documents (the MCP specification's order); that registration is its own.
    from ._cimd import is_metadata_document_url

    if stored.obtained == "dynamic" and is_metadata_document_url(client_id, issuer=login.issuer):
        return stored
    return None


def _tokens_for(login: StoredLogin | None, client_id: str | None) -> StoredTokens | None:
    """The stored tokens, unless they belong to another client than the one asked for."""
    if login is None or login.tokens is None:
        return None
    if client_id is not None and _client_for(login, client_id) is None:
        return None
    return login.tokens


def _covers(granted: str | None, requested: str | None) -> bool:
    """RFC 6749 §3.3: scopes are space-separated and unordered."""
    if requested is None:
        return True
    if granted is None:
        return not requested.split()
    return set(requested.split()) <= set(granted.split())


def _usable_tokens(
    login: StoredLogin | None, client_id: str | None, scope: str | None, refused: str | None
) -> StoredTokens | None:
    """The stored tokens of ``login`` if their access token may be used as it is (no I/O):
    this client's, covering ``scope``, valid for more than ``DEFAULT_LEEWAY``, not refused."""
    tokens = _tokens_for(login, client_id)
    if tokens is None or not tokens.is_valid() or not _covers(tokens.scope, scope):
        return None
    if refused is not None and tokens.access_token == refused:
        return None
    return tokens


def _usable_token(
    login: StoredLogin | None, client_id: str | None, scope: str | None, refused: str | None
) -> Token | None:
    tokens = _usable_tokens(login, client_id, scope, refused)
    if tokens is None:
        return None
    assert login is not None  # noqa: S101  (tokens came from it)
    return token_from_stored(tokens, login.client, login.dpop_key)


def _stored_token(login: StoredLogin | None, tokens: StoredTokens) -> Token:
    """What a call returns for usable stored tokens, whichever path read them."""
    assert login is not None  # noqa: S101  (tokens came from it)
    logger.debug("using the stored access token for %s", login.issuer)
    return token_from_stored(tokens, login.client, login.dpop_key)


def token_from_stored(
    tokens: StoredTokens,
    client: ClientRegistration | None,
    dpop_key: Mapping[str, object] | None = None,
) -> Token:
    """A :class:`Token` for stored tokens: ``expires_in`` is what is left of their lifetime,
    and ``dpop_key`` the key a DPoP-bound token needs for every request (RFC 9449)."""
    now = time.time()
    data: dict[str, object] = dict(tokens.extra)
    data["access_token"] = tokens.access_token
    data["token_type"] = tokens.token_type
    if tokens.expires_at is not None:
        data["expires_in"] = max(0, math.floor(tokens.expires_at - now))
    for name in ("refresh_token", "scope", "id_token"):
        value = getattr(tokens, name)
        if value is not None:
            data[name] = value
    token = Token(data, received_at=now, client=client)
    if dpop_key is not None:
        from ._dpop import DPoPKey  # only DPoP-bound logins pay for the JOSE import

        token.dpop_key = DPoPKey.from_jwk(dpop_key)
    return token


def _stored_tokens(token: Token, scope: str | None, previous: StoredTokens | None) -> StoredTokens:
    tokens = StoredTokens.from_response(token, received_at=token.received_at, previous=previous)
    if tokens.scope is None and scope is not None:
        # RFC 6749 §5.1: a response without scope was granted the scope requested.
        tokens = dataclasses.replace(tokens, scope=scope)
    return tokens


async def _refresh_or_login(
    store: TokenStore,
    login: StoredLogin | None,
    key: LoginKey,
    *,
    client_id: str | None,
    client_secret: str | None,
    scope: str | None,
    config: CallbackConfig | None,
    open_browser: BrowserOpener | None,
    timeout: float | None,
    paste: bool,
    show_url: ShowURL | None,
    browser_command: str | None = None,
    method: str = "browser",
    show_code: ShowCode | None = None,
    transport: httpx2.AsyncBaseTransport | None,
    metadata: Mapping[str, object] | None,
) -> Token:
    from anyio import CancelScope

    from .._errors import TokenError
    from ._authorize import authorize
    from ._clients import with_secret
    from ._refresh import is_refusal, load_server, refresh

    issuer, resource = key.issuer, key.resource
    base = login if login is not None else StoredLogin(issuer=issuer, resource=resource)
    client = _client_for(login, client_id)
    tokens = _tokens_for(login, client_id)
    if client is not None and client_secret is not None and client.client_id == client_id:
        client = with_secret(client, client_secret)
    server, cached = await load_server(
        issuer,
        given=metadata,
        cached=None if login is None else login.metadata,
        transport=transport,
    )
    if cached is not None:
        base = dataclasses.replace(base, metadata=cached)
    refresh_token = None if tokens is None else tokens.refresh_token
    if (
        refresh_token is not None
        and client is not None
        and not client.secret_expired()
        and _covers(None if tokens is None else tokens.scope, scope)
    ):
        try:
            # Shielded, with the save below: once the server has rotated the refresh token
            # (RFC 9700 §4.14.2), the new one is the only one left, and a cancellation that
            # lost it would log the user out. The HTTP timeout bounds the wait.
            with CancelScope(shield=True):
                token = await refresh(
                    issuer,
                    client,
                    refresh_token,
                    server=server,
                    resource=resource,
                    transport=transport,
                    # A DPoP-bound refresh token is refreshed with a proof of its key (§5).
                    dpop_key=None if login is None else login.dpop_key,
                )
                saved = await store.save(
                    dataclasses.replace(
                        base, client=client, tokens=_stored_tokens(token, scope, tokens)
                    )
                )
        except TokenError as exc:
            if not is_refusal(exc):
                raise
            logger.info(
                "the server refused the stored refresh token (error=%s); logging in again",
                exc.error,
            )
            if exc.error == "invalid_client":
                client = None  # the registration itself is gone: register again
            # Forget what the server refused before the browser opens: a crash or a
            # cancelled login must not leave a dead refresh token to be tried again.
            base = await store.save(dataclasses.replace(base, tokens=None, client=client))
        else:
            assert saved.tokens is not None  # noqa: S101  (just saved)
            return token_from_stored(saved.tokens, saved.client, saved.dpop_key)
    if method == "device":
        from ._device import device_login

        if show_code is None:
            msg = (
                "method='device' needs show_code=, to tell the user the code and where to enter it."
            )
            raise TypeError(msg)
        token = await device_login(
            issuer,
            show_code=show_code,
            client_id=client_id,
            client_secret=client_secret,
            scope=scope,
            resource=resource,
            transport=transport,
            metadata=server.document,
            app_name=config.app_name if config is not None else "the application",
        )
    else:
        token = await authorize(
            issuer,
            client_id=client_id,
            client_secret=client_secret,
            client=client,
            scope=scope,
            resource=resource,
            config=config,
            open_browser=open_browser,
            timeout=timeout,
            paste=paste,
            show_url=show_url,
            browser_command=browser_command,
            transport=transport,
            metadata=server.document,
        )
    with CancelScope(shield=True):  # the user just signed in: do not lose it now
        saved = await store.save(
            dataclasses.replace(
                base,
                client=token.client,
                tokens=_stored_tokens(token, scope, None),
                # The key of a DPoP-bound login: a secret, kept with the tokens (0600 file or
                # keyring), and what makes a copied token store useless on its own.
                dpop_key=None if token.dpop_key is None else token.dpop_key.private_jwk(),
            )
        )
    assert saved.tokens is not None  # noqa: S101  (just saved)
    logger.info("logged in to %s and saved the login", issuer)
    return token_from_stored(saved.tokens, saved.client, saved.dpop_key)


# --- without an event loop -------------------------------------------------------------------


def stored_now(
    store: FileTokenStore | MemoryTokenStore | KeyringTokenStore,
    issuer: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    scope: str | None = None,
    resource: str | None = None,
    method: str = "browser",
    show_code: ShowCode | None = None,
) -> tuple[StoredLogin, StoredTokens] | None:
    """The first step of :func:`get_token` on this thread, for a store that can be read
    without an event loop: the same argument checks and errors, the same read, the same rule
    for a usable token. None: no usable token, so the caller takes the async path (refresh
    or login), which reads the store again under its lock."""
    _check(store, issuer, client_id, client_secret, scope, method, show_code)
    login = store._load_sync(LoginKey(issuer, resource))
    tokens = _usable_tokens(login, client_id, scope, None)
    if tokens is None:
        return None
    assert login is not None  # noqa: S101  (tokens came from it)
    return login, tokens


def _parameter_names(function: Callable[..., object]) -> frozenset[str]:
    code = function.__code__  # the names inspect.signature gives, without building one
    return frozenset(code.co_varnames[: code.co_argcount + code.co_kwonlyargcount])


_GET_TOKEN_PARAMETERS = _parameter_names(get_token)


def get_token_now(issuer: object, options: Mapping[str, object]) -> Token | None:
    """``get_token(issuer, **options)`` on this thread if it would return a stored token at
    once; None when it would not, or when the call is not one this can judge: then the caller
    runs :func:`get_token` itself on an event loop, which gives every answer and every error.

    Judged here: the library's own stores, exactly (a subclass may override ``load``), with an
    issuer (resource-first discovery needs the network) and only :func:`get_token`'s own
    options (any other is the ``TypeError`` the async call raises). The options that matter
    only for a login (``config``, ``timeout``, ``transport``, ...) are not looked at, as on the
    async path when a stored token is returned.
    """
    from .._store._file_store import FileTokenStore
    from .._store._keyring_store import KeyringTokenStore
    from .._store._memory_store import MemoryTokenStore

    store = options.get("store")
    if (
        issuer is None
        or not options.keys() <= _GET_TOKEN_PARAMETERS
        or type(store) not in (FileTokenStore, MemoryTokenStore, KeyringTokenStore)
    ):
        return None
    assert isinstance(store, (FileTokenStore, MemoryTokenStore, KeyringTokenStore))  # noqa: S101

    def option(name: str, default: object = None) -> Any:
        return options.get(name, default)  # its type is checked by _check, as in get_token

    found = stored_now(
        store,
        cast("str", issuer),
        client_id=option("client_id"),
        client_secret=option("client_secret"),
        scope=option("scope"),
        resource=option("resource"),
        method=option("method", "browser"),
        show_code=option("show_code"),
    )
    if found is None:
        return None
    return _stored_token(*found)
