"""Loopback login handlers for the MCP Python SDK's ``OAuthClientProvider``.

The SDK's ``OAuthClientProvider`` runs discovery, dynamic client registration (RFC 7591),
PKCE (RFC 7636) and the token exchange itself, but it ships no callback server: it calls a
``redirect_handler(authorization_url)`` and then a ``callback_handler()`` that must return the
``AuthorizationCodeResult`` (code, state, iss) from the browser's redirect. This module
supplies both, backed by one :func:`~oauth_loopback.open_receiver` receiver, on asyncio and
trio::

    from oauth_loopback.mcp import loopback_oauth

    async with loopback_oauth() as cb:
        auth = cb.client_provider(
            server_url, my_token_storage, cb.client_metadata(client_name="my-cli")
        )
        ...  # httpx2.AsyncClient(auth=auth) -> streamable_http_client -> ClientSession

The storage wrapper (:class:`RedirectAwareTokenStorage`) keeps the user logged in across
runs: stored tokens carry their expiry so the SDK refreshes them instead of opening the
browser, and a registration made for another ephemeral port is kept for refreshing and
replaced only when a browser login actually starts.

Requires the ``mcp`` extra: ``pip install 'oauth-loopback[mcp]'``.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import anyio
import httpx2

from .._errors import BrowserUnavailable, InvalidAuthorizationURL, OAuthLoopbackError

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

try:
    from mcp.client.auth import OAuthClientProvider, TokenStorage
    from mcp.shared.auth import (
        AuthorizationCodeResult,
        OAuthClientInformationFull,
        OAuthClientMetadata,
        OAuthToken,
    )
    from pydantic import AnyUrl
except ImportError as exc:  # pragma: no cover - exercised in a test with mcp hidden
    if (exc.name or "").partition(".")[0] not in ("mcp", "pydantic"):
        raise
    _msg = (
        "oauth_loopback.mcp needs the MCP Python SDK (the 'mcp' package), which is not "
        "installed. Install it with: pip install 'oauth-loopback[mcp]'"
    )
    raise ImportError(_msg, name=exc.name) from exc

from .._config import CallbackConfig
from .._login._browser import BrowserOpener, check_browser_url, launch_browser
from .._receiver._receiver import CallbackReceiver, PendingCallback, open_receiver
from .._receiver._tasks import background
from .._store._records import DEFAULT_LEEWAY
from ._registration import (
    Verdict,
    judge_registration,
    loopback_port,
    registration_kind,
    same_redirect_uri,
)

__all__ = [
    "REPLACE_ON_LOGIN",
    "ExpiringToken",
    "InvalidAuthorizationURL",
    "LoginHandlers",
    "LoopbackOAuth",
    "RedirectAwareTokenStorage",
    "loopback_oauth",
    "registered_port",
]

logger = logging.getLogger("oauth_loopback.mcp")


class LoginHandlers:
    """A ``redirect_handler`` / ``callback_handler`` pair for one ``OAuthClientProvider``.

    Get one from :meth:`LoopbackOAuth.handlers`. ``redirect_handler`` reads the SDK's
    ``state`` from the authorization URL, registers it with the shared receiver, checks the
    URL and opens the browser; ``callback_handler`` waits for that login's response and
    returns the SDK's ``AuthorizationCodeResult``.

    The SDK awaits the two one after the other in the same task, so a login is keyed by its
    task: several providers may share one pair and still log in concurrently, each waking on
    its own ``state``.
    """

    def __init__(
        self,
        receiver: CallbackReceiver,
        *,
        open_browser: BrowserOpener | None = None,
        issuer: str | None = None,
        task_group: TaskGroup | None = None,
    ) -> None:
        self._receiver = receiver
        self._open_browser = open_browser
        self._issuer = issuer
        # Where the browser is launched beside the login and its redirect page is kept
        # (loopback_oauth() passes its own); None launches inline, as the SDK awaits it.
        self._task_group = task_group
        self._provider: OAuthClientProvider | None = None
        self._pending: dict[int, PendingCallback] = {}
        # Logins whose code went to the SDK and whose page waits for the token exchange.
        self._held: dict[int, PendingCallback] = {}
        self._reporting = False  # attached to a provider that reports the exchange

    def _settle(self, task: int, ok: bool, message: str | None = None) -> None:
        """The token exchange of ``task``'s login ended: let its held page say how."""
        pending = self._held.pop(task, None)
        if pending is not None:
            pending.finish(ok=ok, message=message)

    def attach(self, provider: OAuthClientProvider) -> OAuthClientProvider:
        """Let ``redirect_handler`` read the issuer from ``provider``'s discovered metadata.

        RFC 9207: when the authorization server's metadata (RFC 8414) advertises
        ``authorization_response_iss_parameter_supported``, its responses must carry that
        ``iss``, and the receiver refuses one that does not. :meth:`LoopbackOAuth.client_provider`
        attaches for you. Returns ``provider``.
        """
        self._provider = provider
        return provider

    def _expected_issuer(self, authorization_url: str) -> tuple[str | None, bool]:
        """The issuer a response's ``iss`` must equal, and whether it must be present.

        RFC 9207 §2.4: a present ``iss`` must be the issuer's whatever the server
        advertises; a missing one is refused only where the metadata promises ``iss``.
        """
        if self._issuer is not None:
            return self._issuer, True
        context = getattr(self._provider, "context", None)
        metadata = getattr(context, "oauth_metadata", None)
        if metadata is None:
            return None, False
        endpoint = str(metadata.authorization_endpoint)
        if urlsplit(authorization_url)._replace(query="", fragment="").geturl() != endpoint:
            return None, False  # not the endpoint this metadata describes; the SDK checks iss
        # The SDK compares iss with str(metadata.issuer), so register that same string.
        return str(metadata.issuer), bool(metadata.authorization_response_iss_parameter_supported)

    def _check_registration(self, client_ids: list[str], redirect_uri: str) -> None:
        """Warn before a browser login that the server will likely refuse.

        The storage wrapper has the SDK replace a stale dynamic registration before it gets
        here; what still arrives with a redirect URI its registration does not list is a
        registration that cannot be replaced (or a step-up the SDK ran without re-discovery).
        """
        context = getattr(self._provider, "context", None)
        info = getattr(context, "client_info", None)
        if info is None or client_ids != [info.client_id]:
            return
        verdict = judge_registration(
            [str(uri) for uri in info.redirect_uris or ()], info.application_type, redirect_uri
        )
        if verdict.allows_login:
            return
        logger.warning(
            "this login uses client %s, whose registration does not list the redirect URI %s; "
            "a server that matches redirect URIs exactly shows an error page instead of "
            "signing in. Register http://127.0.0.1/callback without a port (RFC 8252 §7.3), "
            "pin the port the registration lists (callbackPort, or CallbackConfig(port=...)), "
            "or remove the registration from the storage so that the client registers again",
            info.client_id,
            redirect_uri,
        )

    async def redirect_handler(self, authorization_url: str) -> None:
        """Register the login carried by ``authorization_url`` and open it in the browser.

        :raises InvalidAuthorizationURL: no single ``state``, or a ``redirect_uri`` that is not
            this receiver's (``OAuthClientMetadata.redirect_uris`` must start with
            ``cb.redirect_uri``).
        :raises UnsafeBrowserURL: the URL is not https (or http to loopback).
        """
        check_browser_url(authorization_url)
        query = parse_qs(urlsplit(authorization_url).query, keep_blank_values=True)
        states = query.get("state", [])
        if len(states) != 1 or not states[0]:
            msg = (
                "The authorization URL has no single 'state' parameter, so its response could "
                "not be told apart from other logins. Use the SDK's OAuthClientProvider, which "
                "always adds one, or call receiver.expect() yourself."
            )
            raise InvalidAuthorizationURL(msg)
        redirect_uris = query.get("redirect_uri", [])
        if len(redirect_uris) != 1 or not same_redirect_uri(
            redirect_uris[0], self._receiver.redirect_uri
        ):
            msg = (
                f"The authorization URL sends the browser to {redirect_uris!r}, but this "
                f"receiver listens on {self._receiver.redirect_uri!r}, so the login would never "
                f"complete. Build OAuthClientMetadata with redirect_uris=[cb.redirect_uri] "
                f"(or cb.client_metadata(...))."
            )
            raise InvalidAuthorizationURL(msg)
        self._check_registration(query.get("client_id", []), redirect_uris[0])
        task = anyio.get_current_task().id
        previous = self._pending.pop(task, None)
        if previous is not None:
            # An earlier login in this task never reached callback_handler (it failed or was
            # cancelled in between); its state must not stay valid.
            previous.cancel()
        issuer, require_iss = self._expected_issuer(authorization_url)
        # The page waits for the token exchange only where the provider reports its end
        # (client_provider()) and the browser opens beside the login: an opener that loads
        # the whole page would otherwise wait for a token the SDK asks for after it returns.
        holding = self._reporting and self._task_group is not None
        pending = self._receiver.expect(
            states[0], issuer=issuer, require_iss=require_iss, hold_page=holding
        )
        self._pending[task] = pending
        if holding:
            assert self._task_group is not None  # noqa: S101  (holding says so)
            self._task_group.start_soon(self._launch, authorization_url, pending)
            return
        try:
            opened = await launch_browser(
                authorization_url, self._open_browser, task_group=self._task_group
            )
        except BaseException:
            del self._pending[task]
            pending.cancel()
            raise
        if not opened:
            _warn_not_opened()

    async def _launch(self, authorization_url: str, pending: PendingCallback) -> None:
        """Open the browser beside the login; a failing opener ends that login with it."""
        try:
            opened = await launch_browser(
                authorization_url, self._open_browser, task_group=self._task_group
            )
        except OAuthLoopbackError as exc:
            pending.cancel(exc)  # callback_handler raises it
        except Exception as exc:  # noqa: BLE001  (handed to callback_handler, which raises it)
            error = BrowserUnavailable(
                f"The browser launcher (open_browser=) raised {type(exc).__name__}: {exc}. "
                f"Fix the launcher, or pass open_browser= a function that shows the URL."
            )
            error.__cause__ = exc
            pending.cancel(error)
        else:
            if not opened:
                _warn_not_opened()

    async def callback_handler(self) -> AuthorizationCodeResult:
        """Wait for this task's login and return ``AuthorizationCodeResult(code, state, iss)``.

        Waits up to :attr:`CallbackConfig.timeout` (300 s by default).

        :raises AuthorizationDenied: the user or the server refused (``error=access_denied``).
        :raises AuthorizationError: the server answered with another ``error``.
        :raises IssuerMismatch: RFC 9207 ``iss`` missing or wrong where it is required.
        :raises CallbackTimeout: nothing arrived in time.
        :raises RuntimeError: no ``redirect_handler`` call preceded this one in this task.
        """
        pending = self._pending.pop(anyio.get_current_task().id, None)
        if pending is None:
            msg = (
                "callback_handler() was called without a preceding redirect_handler() in the "
                "same task. Pass both handlers of one pair to OAuthClientProvider."
            )
            raise RuntimeError(msg)
        response = await pending.wait()
        if pending.hold_page:
            self._held[anyio.get_current_task().id] = pending
        return AuthorizationCodeResult(code=response.code, state=response.state, iss=response.iss)


def _warn_not_opened() -> None:
    logger.warning(
        "could not open a browser for the login; pass open_browser= to loopback_oauth() "
        "to show the authorization URL to the user yourself"
    )


class _ReportingProvider(OAuthClientProvider):
    """An ``OAuthClientProvider`` that tells its handlers how each login's exchange ended.

    Its flow (``httpx2.Auth.async_auth_flow``) is the SDK's, passed through unchanged; we
    only watch it: once the SDK sends the original request again after a login, a token
    arrived (it does so only after storing one); an exception out of the flow is a failed
    login; a flow closed before either (the HTTP client gave up) is one too. The browser's
    held page then says which, instead of "Signed in" on the mere arrival of a code.
    """

    _loopback_handlers: LoginHandlers

    async def async_auth_flow(
        self, request: httpx2.Request
    ) -> AsyncGenerator[httpx2.Request, httpx2.Response]:
        handlers = self._loopback_handlers
        task = anyio.get_current_task().id
        app = handlers._receiver.config.app_name
        flow = super().async_auth_flow(request)
        try:
            outgoing = await flow.__anext__()
            while True:
                if outgoing is request:
                    handlers._settle(task, ok=True)
                response = yield outgoing
                outgoing = await flow.asend(response)
        except StopAsyncIteration:
            return
        except Exception as exc:
            handlers._settle(task, ok=False, message=_failure_text(exc, app))
            raise
        finally:
            handlers._settle(
                task,
                ok=False,
                message=f"{app} stopped before the sign-in finished. Start it again from {app}.",
            )
            await flow.aclose()


def _failure_text(exc: Exception, app: str) -> str:
    """The held page's reason for a failed MCP login: the SDK's message, shortened."""
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return (
        f"{app} could not finish the sign-in ({type(exc).__name__}: {text}). Start the "
        f"sign-in again from {app}."
    )


#: The SEP-2352 issuer binding put on a registration that may refresh but must not start a
#: browser login with this run's redirect URI. It equals no issuer, so the SDK keeps the
#: registration for a refresh grant (which checks no binding) and discards it, and registers
#: again, as soon as it starts an interactive login (``credentials_match_issuer``).
REPLACE_ON_LOGIN = "urn:oauth-loopback:replace-on-interactive-login"

# StoredTokens.is_valid()'s leeway: a token with less than this left is treated as expired,
# so the SDK refreshes it before sending it instead of after a 401.
_EXPIRY_LEEWAY = DEFAULT_LEEWAY


class ExpiringToken(OAuthToken):
    """An SDK ``OAuthToken`` that also carries when its access token expires.

    ``expires_at`` is absolute (a ``time.time()`` value), set by
    :meth:`RedirectAwareTokenStorage.set_tokens` from the response's relative
    ``expires_in`` (RFC 6749 §5.1). A storage that serializes tokens must keep the field: dump
    the object it is given (``model_dump_json()``) and load it back with
    ``ExpiringToken.model_validate_json(...)``; ``OAuthToken.model_validate_json`` drops it.
    The repr never shows a token.
    """

    expires_at: float | None = None

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            if name in ("access_token", "refresh_token") and value:
                yield name, "<redacted>"
            else:
                yield name, value


def _plain_token(tokens: OAuthToken, **update: Any) -> OAuthToken:
    fields = {name: getattr(tokens, name) for name in OAuthToken.model_fields}
    fields.update(update)
    return OAuthToken(**fields)


class RedirectAwareTokenStorage:
    """A ``TokenStorage`` wrapper that keeps users logged in across runs and port changes.

    Wraps any SDK ``TokenStorage``:

    - **Tokens carry their expiry.** ``set_tokens`` stores an :class:`ExpiringToken` with the
      absolute ``expires_at``; ``get_tokens`` restores ``expires_in`` relative to now. The SDK
      (2.3) loads stored tokens without an expiry and would send an expired one, get 401 and
      open the browser; so a token with less than a minute left comes back with its access
      token blanked, and the SDK refreshes it (RFC 6749 §6) before the first request. Once
      :meth:`attach`-ed to its provider, the wrapper also hands the SDK the expiry itself, so
      a long-running client refreshes a loaded token when it runs out.
    - **A registration is never hidden.** The SDK refreshes only when it has the
      registration, and a refresh grant never sends a redirect URI, so the stored
      registration is always handed over, whatever port it was registered for.
    - **A stale registration is replaced when a browser login starts, and only then.** When
      a dynamically registered client (RFC 7591) does not list this run's redirect URI (the
      ephemeral port changed) and the server may match redirect URIs exactly, the wrapper
      hands the SDK a copy bound to the issuer :data:`REPLACE_ON_LOGIN`. The SDK refreshes
      with it as usual; when it has to log in interactively, its SEP-2352 issuer check
      discards the copy and it registers again with the live redirect URI, through your HTTP
      client, and stores the new registration here (replacing the old one).
    - **What cannot be replaced is used as it is:** a pre-registered client (a record
      without RFC 7591 ``client_id_issued_at``), a client ID metadata document, a server that
      advertises no ``registration_endpoint``. A loopback URI registered without a port
      (``http://127.0.0.1/callback``) matches every port (RFC 8252 §7.3) and a record listing
      no redirect URIs is left to the server to judge.

    ``keep_native=True`` keeps even a stale registration for browser logins when it is
    ``application_type: native`` and every registered URI is this one on another loopback
    port: RFC 8252 §7.3 says servers must then accept any port. It is off by default because
    many servers do not (the MCP Python SDK's own server, 2.3, matches exactly even for native
    clients, and a rejected redirect strands the user on its error page).
    """

    def __init__(
        self, storage: TokenStorage, redirect_uri: str, *, keep_native: bool = False
    ) -> None:
        self.storage = storage
        self.redirect_uri = redirect_uri
        self.keep_native = keep_native
        self._provider: OAuthClientProvider | None = None
        # client_id -> its real issuer binding, for registrations handed out to be replaced.
        self._replacing: dict[str, str | None] = {}

    def __repr__(self) -> str:
        return (
            f"RedirectAwareTokenStorage({self.storage!r}, {self.redirect_uri!r}, "
            f"keep_native={self.keep_native!r})"
        )

    def attach(self, provider: OAuthClientProvider) -> OAuthClientProvider:
        """Let the wrapper read ``provider``'s settings and hand it the stored token expiry.

        With it, a token loaded from storage is refreshed when it expires, not only when it
        had expired at start-up, and the provider's ``client_metadata_url`` and discovered
        metadata inform which registrations can be replaced. :meth:`LoopbackOAuth.client_provider`
        attaches for you. Returns ``provider``.
        """
        self._provider = provider
        return provider

    async def get_tokens(self) -> OAuthToken | None:
        tokens = await self.storage.get_tokens()
        if tokens is None:
            return None
        if not isinstance(tokens, ExpiringToken):
            return tokens  # not stored through this wrapper: no known expiry
        expires_at = tokens.expires_at
        if expires_at is None:
            return _plain_token(tokens)  # the server gave no expires_in: a 401 tells
        if self._provider is not None:
            # The SDK (2.3) computes this only from a token response, never from storage.
            self._provider.context.token_expiry_time = expires_at - _EXPIRY_LEEWAY
        left = expires_at - time.time()
        if left > _EXPIRY_LEEWAY:
            return _plain_token(tokens, expires_in=int(left))
        logger.info(
            "the stored access token has expired; %s",
            "the client refreshes it before its first request"
            if tokens.refresh_token
            else "there is no refresh token, so the client logs in again",
        )
        # An empty access token is one the SDK neither sends nor trusts: it refreshes first.
        return _plain_token(tokens, access_token="", expires_in=0)

    async def set_tokens(self, tokens: OAuthToken) -> None:
        # RFC 6749 §5.1: expires_in counts from the response, which the SDK stores at once.
        expires_at = None if tokens.expires_in is None else time.time() + int(tokens.expires_in)
        fields = {name: getattr(tokens, name) for name in OAuthToken.model_fields}
        await self.storage.set_tokens(ExpiringToken(**fields, expires_at=expires_at))

    def _metadata_url(self) -> str | None:
        return None if self._provider is None else self._provider.context.client_metadata_url

    def _server_cannot_register(self) -> bool:
        metadata = None if self._provider is None else self._provider.context.oauth_metadata
        return metadata is not None and metadata.registration_endpoint is None

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        info = await self.storage.get_client_info()
        if info is None:
            return None
        verdict = judge_registration(
            [str(uri) for uri in info.redirect_uris or ()],
            info.application_type,
            self.redirect_uri,
            keep_native=self.keep_native,
        )
        if verdict is Verdict.PORT_ONLY:
            logger.info(
                "keeping the stored native client registration for %s: it differs only by "
                "loopback port, which RFC 8252 §7.3 servers accept",
                self.redirect_uri,
            )
        if verdict.allows_login:
            return info
        kind = registration_kind(
            info.client_id,
            client_id_issued_at=info.client_id_issued_at,
            client_metadata_url=self._metadata_url(),
        )
        if kind != "dynamic" or self._server_cannot_register():
            reason = {
                "preregistered": "a pre-registered client",
                "metadata_document": "a client ID metadata document",
                "dynamic": "from a server that advertises no registration endpoint",
            }[kind]
            logger.info(
                "the stored client registration does not list %s, but it is %s and cannot "
                "be replaced; it is used as it is (the server must accept any loopback port, "
                "RFC 8252 §7.3)",
                self.redirect_uri,
                reason,
            )
            return info
        logger.info(
            "the stored client registration does not list %s; it still refreshes tokens, and "
            "the client registers again if a browser login is needed",
            self.redirect_uri,
        )
        self._replacing[info.client_id] = info.issuer
        return info.model_copy(update={"issuer": REPLACE_ON_LOGIN})

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        if client_info.issuer == REPLACE_ON_LOGIN:
            # Never let the marker reach the storage: put the real binding back.
            original = self._replacing.get(client_info.client_id)
            client_info = client_info.model_copy(update={"issuer": original})
        elif self._replacing and client_info.client_id not in self._replacing:
            logger.info(
                "replacing the stale client registration with a new one for %s",
                self.redirect_uri,
            )
            self._replacing.clear()
        await self.storage.set_client_info(client_info)


async def registered_port(
    storage: TokenStorage, config: CallbackConfig | None = None
) -> int | None:
    """The loopback port of ``storage``'s stored registration, for ``prefer_port``.

    Only a registered URI on the same host and path as ``config`` counts.
    """
    config = config or CallbackConfig()
    info = await storage.get_client_info()
    if info is None:
        return None
    return loopback_port([str(u) for u in info.redirect_uris or ()], config.host, config.path)


class LoopbackOAuth:
    """What :func:`loopback_oauth` yields: one live receiver and handlers for the SDK."""

    def __init__(
        self,
        receiver: CallbackReceiver,
        *,
        open_browser: BrowserOpener | None,
        issuer: str | None,
        task_group: TaskGroup | None = None,
    ) -> None:
        #: The underlying :class:`~oauth_loopback.CallbackReceiver`.
        self.receiver = receiver
        self._open_browser = open_browser
        self._issuer = issuer
        self._task_group = task_group
        self._default = self.handlers()

    @property
    def redirect_uri(self) -> str:
        """``http://127.0.0.1:<bound port>/callback``: put it in ``redirect_uris``."""
        return self.receiver.redirect_uri

    @property
    def port(self) -> int:
        return self.receiver.port

    def handlers(self, *, issuer: str | None = None) -> LoginHandlers:
        """A fresh handler pair, e.g. one per MCP server, with its own RFC 9207 ``issuer``."""
        return LoginHandlers(
            self.receiver,
            open_browser=self._open_browser,
            issuer=issuer if issuer is not None else self._issuer,
            task_group=self._task_group,
        )

    async def redirect_handler(self, authorization_url: str) -> None:
        """The default pair's :meth:`LoginHandlers.redirect_handler`."""
        await self._default.redirect_handler(authorization_url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        """The default pair's :meth:`LoginHandlers.callback_handler`."""
        return await self._default.callback_handler()

    def client_metadata(self, **fields: Any) -> OAuthClientMetadata:
        """``OAuthClientMetadata`` for a public native client on :attr:`redirect_uri`.

        ``redirect_uris=[self.redirect_uri]``; your ``fields`` override the defaults:

        - ``token_endpoint_auth_method="none"``: a native app cannot keep a secret (RFC 8252
          §8.4). Left unset, RFC 7591 §2 defaults to ``client_secret_basic``, and servers
          (the TypeScript MCP SDK's) then register a confidential client the SDK cannot use.
        - ``application_type="native"`` (OpenID Connect Dynamic Registration §2).
        - ``grant_types=["authorization_code", "refresh_token"]``: a server may refuse a
          refresh grant to a client not registered for it (RFC 7591 §2).
        """
        if "redirect_uris" in fields:
            msg = (
                "client_metadata() sets redirect_uris to [cb.redirect_uri] itself; drop the "
                "redirect_uris argument (or build OAuthClientMetadata yourself)."
            )
            raise TypeError(msg)
        defaults: dict[str, Any] = {
            "token_endpoint_auth_method": "none",
            "application_type": "native",
            "grant_types": ["authorization_code", "refresh_token"],
        }
        return OAuthClientMetadata(
            redirect_uris=[AnyUrl(self.redirect_uri)], **{**defaults, **fields}
        )

    def storage(
        self, storage: TokenStorage, *, keep_native: bool = False
    ) -> RedirectAwareTokenStorage:
        """Wrap ``storage`` in a :class:`RedirectAwareTokenStorage` for this redirect URI."""
        return RedirectAwareTokenStorage(storage, self.redirect_uri, keep_native=keep_native)

    def client_provider(
        self,
        server_url: str,
        storage: TokenStorage,
        client_metadata: OAuthClientMetadata | None = None,
        *,
        issuer: str | None = None,
        keep_native: bool = False,
        **kwargs: Any,
    ) -> OAuthClientProvider:
        """An ``OAuthClientProvider`` wired to this receiver with its own handler pair.

        ``storage`` is wrapped in :class:`RedirectAwareTokenStorage`; ``client_metadata``
        defaults to :meth:`client_metadata` and must list :attr:`redirect_uri` first.
        Other keyword arguments go to ``OAuthClientProvider`` (e.g. ``client_metadata_url=``
        for a client ID metadata document). The handlers and the storage wrapper are
        attached to the provider (:meth:`LoginHandlers.attach`,
        :meth:`RedirectAwareTokenStorage.attach`).
        """
        if client_metadata is None:
            client_metadata = self.client_metadata()
        handlers = self.handlers(issuer=issuer)
        wrapped = self.storage(storage, keep_native=keep_native)
        provider = _ReportingProvider(
            server_url,
            client_metadata,
            wrapped,
            redirect_handler=handlers.redirect_handler,
            callback_handler=handlers.callback_handler,
            **kwargs,
        )
        # The browser's page waits (a few seconds) for the token exchange and says whether
        # it worked: "Signed in" only once the SDK has stored a token.
        provider._loopback_handlers = handlers
        handlers._reporting = True
        wrapped.attach(provider)
        return handlers.attach(provider)


@asynccontextmanager
async def loopback_oauth(
    config: CallbackConfig | Mapping[str, Any] | None = None,
    *,
    open_browser: BrowserOpener | None = None,
    issuer: str | None = None,
    prefer_port_from: TokenStorage | Iterable[TokenStorage] | None = None,
) -> AsyncIterator[LoopbackOAuth]:
    """Open a loopback receiver and yield handlers for the SDK's ``OAuthClientProvider``.

    :param config: a :class:`CallbackConfig`, or the mapping a client keeps per MCP server
        entry (``{"callbackPort": 19876}``, ``{"redirectUri": ...}``; see
        :meth:`CallbackConfig.from_mapping`). A fixed port that is busy raises
        :class:`CallbackPortInUse` here, before any login starts.
    :param open_browser: ``open_browser(url)``, sync or async; default :func:`webbrowser.open`.
    :param issuer: RFC 9207 issuer every login's response must carry (default: taken from
        the provider's discovered metadata when it advertises ``iss``; see
        :meth:`LoginHandlers.attach`).
    :param prefer_port_from: sticky port: in ephemeral mode, try the port of the first
        stored registration in these storages (``CallbackConfig.prefer_port``), falling back
        to an OS-chosen port when it is busy.
    """
    if config is None:
        config = CallbackConfig()
    elif isinstance(config, Mapping):
        config = CallbackConfig.from_mapping(config)
    elif not isinstance(config, CallbackConfig):
        msg = (
            f"loopback_oauth() takes a CallbackConfig or a mapping of settings such as "
            f"{{'callbackPort': 19876}}, not {type(config).__name__}."
        )
        raise TypeError(msg)
    if prefer_port_from is not None and config.port is None and config.prefer_port is None:
        storages = (
            list(prefer_port_from) if isinstance(prefer_port_from, Iterable) else [prefer_port_from]
        )
        for storage in storages:
            port = await registered_port(storage, config)
            if port is not None:
                config = dataclasses.replace(config, prefer_port=port)
                break
    # The task group opens browsers beside logins and keeps their redirect pages; it ends
    # (removing the pages) before the receiver closes.
    async with open_receiver(config) as receiver, background() as browsers:
        yield LoopbackOAuth(receiver, open_browser=open_browser, issuer=issuer, task_group=browsers)
