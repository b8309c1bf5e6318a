"""Loopback login handlers for the MCP Python SDK's ``OAuthClientProvider``.

The SDK's ``OAuthClientProvider`` runs discovery, dynamic client registration (RFC 7591),
PKCE (RFC 7636) and the token exchange itself, but it ships no callback server: it calls a
``redirect_handler(authorization_url)`` and then a ``callback_handler()`` that must return the
``AuthorizationCodeResult`` (code, state, iss) from the browser's redirect. This module
supplies both, backed by one :func:`~oauth_loopback.open_receiver` receiver, on asyncio and
trio::

    from oauth_loopback.mcp import loopback_oauth

    async with loopback_oauth() as cb:
        auth = OAuthClientProvider(
            server_url,
            client_metadata=cb.client_metadata(client_name="my-cli"),
            storage=cb.storage(my_token_storage),
            redirect_handler=cb.redirect_handler,
            callback_handler=cb.callback_handler,
        )
        ...  # httpx2.AsyncClient(auth=auth) -> streamable_http_client -> ClientSession

Requires the ``mcp`` extra: ``pip install 'oauth-loopback[mcp]'``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import parse_qs, urlsplit

import anyio

from .._errors import InvalidAuthorizationURL

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
from ._registration import Verdict, judge_registration, loopback_port, same_redirect_uri

__all__ = [
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
    ) -> None:
        self._receiver = receiver
        self._open_browser = open_browser
        self._issuer = issuer
        self._provider: OAuthClientProvider | None = None
        self._pending: dict[int, PendingCallback] = {}

    def attach(self, provider: OAuthClientProvider) -> OAuthClientProvider:
        """Let ``redirect_handler`` read the issuer from ``provider``'s discovered metadata.

        RFC 9207: when the authorization server's metadata (RFC 8414) advertises
        ``authorization_response_iss_parameter_supported``, its responses must carry that
        ``iss``, and the receiver refuses one that does not. :meth:`LoopbackOAuth.client_provider`
        attaches for you. Returns ``provider``.
        """
        self._provider = provider
        return provider

    def _expected_issuer(self, authorization_url: str) -> str | None:
        if self._issuer is not None:
            return self._issuer
        context = getattr(self._provider, "context", None)
        metadata = getattr(context, "oauth_metadata", None)
        if metadata is None or not metadata.authorization_response_iss_parameter_supported:
            return None
        endpoint = str(metadata.authorization_endpoint)
        if urlsplit(authorization_url)._replace(query="", fragment="").geturl() != endpoint:
            return None  # not the endpoint this metadata describes; the SDK still checks iss
        # The SDK compares iss with str(metadata.issuer), so register that same string.
        return str(metadata.issuer)

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
        task = anyio.get_current_task().id
        previous = self._pending.pop(task, None)
        if previous is not None:
            # An earlier login in this task never reached callback_handler (it failed or was
            # cancelled in between); its state must not stay valid.
            previous.cancel()
        pending = self._receiver.expect(states[0], issuer=self._expected_issuer(authorization_url))
        self._pending[task] = pending
        try:
            opened = await launch_browser(authorization_url, self._open_browser)
        except BaseException:
            del self._pending[task]
            pending.cancel()
            raise
        if not opened:
            logger.warning(
                "could not open a browser for the login; pass open_browser= to loopback_oauth() "
                "to show the authorization URL to the user yourself"
            )

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
        return AuthorizationCodeResult(code=response.code, state=response.state, iss=response.iss)


class RedirectAwareTokenStorage:
    """A ``TokenStorage`` that never hands the SDK a registration the server would reject.

    Wraps any SDK ``TokenStorage``. When the stored client registration does not list this
    run's redirect URI (the ephemeral port changed), it is hidden from the SDK, which then
    registers again (RFC 7591) and stores the new registration through this wrapper,
    replacing the stale one. Tokens are passed through untouched.

    ``keep_native=True`` keeps a registration instead when it is ``application_type:
    native`` and every registered URI is this one on another loopback port: RFC 8252 §7.3
    says servers must then accept any port. It is off by default because many servers do
    not: the MCP Python SDK's own authorization server (2.3.0) echoes ``native`` and still
    matches redirect URIs exactly, and a rejected redirect strands the user on the server's
    error page. Turn it on for servers you know follow §7.3; or keep the port stable with
    ``loopback_oauth(prefer_port_from=storage)``.
    """

    def __init__(
        self, storage: TokenStorage, redirect_uri: str, *, keep_native: bool = False
    ) -> None:
        self.storage = storage
        self.redirect_uri = redirect_uri
        self.keep_native = keep_native

    async def get_tokens(self) -> OAuthToken | None:
        return await self.storage.get_tokens()

    async def set_tokens(self, tokens: OAuthToken) -> None:
        await self.storage.set_tokens(tokens)

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
        elif verdict is Verdict.STALE:
            logger.info(
                "the stored client registration does not list %s; ignoring it so the client "
                "registers again",
                self.redirect_uri,
            )
            return None
        return info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
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
    ) -> None:
        #: The underlying :class:`~oauth_loopback.CallbackReceiver`.
        self.receiver = receiver
        self._open_browser = open_browser
        self._issuer = issuer
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
        )

    async def redirect_handler(self, authorization_url: str) -> None:
        """The default pair's :meth:`LoginHandlers.redirect_handler`."""
        await self._default.redirect_handler(authorization_url)

    async def callback_handler(self) -> AuthorizationCodeResult:
        """The default pair's :meth:`LoginHandlers.callback_handler`."""
        return await self._default.callback_handler()

    def client_metadata(self, **fields: Any) -> OAuthClientMetadata:
        """``OAuthClientMetadata`` with ``redirect_uris=[self.redirect_uri]`` and your fields.

        ``application_type`` defaults to ``"native"`` in the SDK, which is what a loopback
        client is (RFC 8252 §8.4).
        """
        if "redirect_uris" in fields:
            msg = (
                "client_metadata() sets redirect_uris to [cb.redirect_uri] itself; drop the "
                "redirect_uris argument (or build OAuthClientMetadata yourself)."
            )
            raise TypeError(msg)
        return OAuthClientMetadata(redirect_uris=[AnyUrl(self.redirect_uri)], **fields)

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
        Other keyword arguments go to ``OAuthClientProvider``.
        """
        if client_metadata is None:
            client_metadata = self.client_metadata()
        handlers = self.handlers(issuer=issuer)
        provider = OAuthClientProvider(
            server_url,
            client_metadata,
            self.storage(storage, keep_native=keep_native),
            redirect_handler=handlers.redirect_handler,
            callback_handler=handlers.callback_handler,
            **kwargs,
        )
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
    async with open_receiver(config) as receiver:
        yield LoopbackOAuth(receiver, open_browser=open_browser, issuer=issuer)
