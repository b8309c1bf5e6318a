"""authorize(): the whole native-app login in one call, on top of the loopback receiver.

Imported lazily (``import oauth_loopback`` stays free of authlib, httpx2 and trio; the
public names are served by ``oauth_loopback.__getattr__``). The steps, each with the standard
that justifies it:

1. bind the receiver (RFC 8252 §7.3: an ephemeral loopback port; §8.3: ``127.0.0.1``);
2. discover the server's metadata (RFC 8414 §3.1, path-aware, then OpenID Connect
   Discovery), and insist its ``issuer`` is the one asked for (RFC 8414 §3.3);
3. pick the client (``_clients``: pre-registered, a client ID metadata document, a registration
   from an earlier login the server still accepts, else RFC 7591 registration with the *live*
   redirect URI);
4. build the authorization URL with PKCE S256 (RFC 7636 §4.2) through authlib, guarded
   against authlib dropping PKCE silently, plus ``resource`` (RFC 8707 §2);
5. open the browser (refusing crafted URLs) and wait for the callback, checking ``iss`` when
   the server advertises it (RFC 9207 §2.4), racing a terminal paste prompt if asked;
6. exchange the code with ``grant_type=authorization_code``, the same redirect URI and the
   verifier (RFC 6749 §4.1.3, RFC 7636 §4.5).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine, Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import anyio
import anyio.abc
import httpx2
from authlib.common.security import generate_token

from .._config import CallbackConfig
from .._errors import (
    BrowserUnavailable,
    IDTokenError,
    OAuthLoopbackError,
    ServerUnreachable,
    TokenError,
    UnsupportedServer,
)
from .._receiver._receiver import CallbackReceiver, PendingCallback, open_receiver
from .._receiver._registry import AuthorizationResponse
from .._receiver._tasks import background
from .._store._records import ClientRegistration
from ._browser import BrowserOpener, check_browser_url, launch_browser
from ._client import VERIFIER_LENGTH, Client, check_pkce, json_object
from ._clients import choose_client
from ._dpop_wire import server_supports_dpop
from ._metadata import Metadata, check_issuer, check_server, discover, given_metadata
from ._paste import PASTE_PROMPT, ReadLine, TerminalLines, wait_for_response
from ._token import Token

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._dpop import DPoPKey

__all__ = ["ShowURL", "StepCallback", "authorize"]

logger = logging.getLogger("oauth_loopback.oauth")

# Seconds an opener still loading the page may take to receive it once the login ended.
_BROWSER_GRACE = 1.0


#: ``show_url(url)``: display the authorization URL to the user (sync; return value ignored).
ShowURL = Callable[[str], object]


#: ``on_step(name, detail)``: called after each step (``bind``, ``discovery``,
#: ``registration``, ``redirect``, ``callback``, ``token``). ``detail`` never holds a secret.
StepCallback = Callable[[str, str], object]


def step(on_step: StepCallback | None, name: str, detail: str) -> None:
    if on_step is not None:
        on_step(name, detail)


async def authorize(
    issuer: str,
    *,
    client_id: str | None = None,
    client_secret: str | None = None,
    client: ClientRegistration | None = None,
    scope: str | None = None,
    resource: str | None = None,
    config: CallbackConfig | None = None,
    open_browser: BrowserOpener | None = None,
    # A login must not hang forever by default (like wait(timeout=),
    # the deliberate exception to ASYNC109, implemented with the receiver's cancel scope).
    timeout: float | None = None,  # noqa: ASYNC109
    paste: bool = False,
    show_url: ShowURL | None = None,
    read_line: ReadLine | None = None,
    on_step: StepCallback | None = None,
    transport: httpx2.AsyncBaseTransport | None = None,
    metadata: Mapping[str, object] | None = None,
    par: bool | None = None,
    dpop: bool | None = None,
    browser_command: str | None = None,
) -> Token:
    """Log in through the user's browser and return the token: the whole native-app flow.

    Opens a loopback receiver (``config``; ephemeral ``127.0.0.1`` port by default),
    discovers the server's metadata, registers a client when ``client_id`` is None, sends
    the browser to the authorization URL (PKCE S256, a fresh ``state``, ``resource``),
    waits for the callback (checking ``iss`` when the server advertises RFC 9207) and
    exchanges the code.

    :param issuer: the authorization server's issuer URL, exactly as its metadata states it.
    :param client_id: a pre-registered client, or an https URL to the app's client ID
        metadata document (used when the server advertises
        ``client_id_metadata_document_supported``; otherwise the app registers, the MCP
        specification's order). None registers a public native client named
        ``config.app_name`` (RFC 7591) with the live redirect URI, unless ``client`` is given.
    :param client_secret: only for a pre-registered confidential client.
    :param client: the registration of an earlier login (``token.client``) to use again. A
        dynamic registration that does not list this run's redirect URI is tried first
        (RFC 8252 §7.3: servers must accept any loopback port): the authorization endpoint
        is asked before the browser opens, and if it refuses, a new client is registered,
        once. ``token.client`` of the result says which registration the login used. Must
        belong to ``issuer``; ignored when ``client_id`` names another client.
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

    :param par: RFC 9126 pushed authorization requests. None (the default) pushes when the
        server offers it, so the browser's URL carries only ``client_id`` and a
        ``request_uri``; False never pushes (refused when the server requires it); True
        insists on it (:class:`UnsupportedServer` when the server offers none).

    :param dpop: RFC 9449 sender-constrained tokens. None (the default) binds the token to a
        fresh ES256 key when the server advertises ``dpop_signing_alg_values_supported``;
        True always sends proofs (and insists on ``token_type: DPoP``); False never. The key
        is ``token.dpop_key``: keep it with the token (a copied token is useless without it).

    :param browser_command: the command that opens the browser (e.g. ``"firefox
        --new-window"``), given the sign-in page's ``file://`` URL as its last argument, never
        the authorization URL (SECURITY.md). Default: ``$BROWSER``, WSL's ``wslview`` or
        ``explorer.exe``, else :func:`webbrowser.open`.

    :raises DiscoveryError: no metadata at any well-known URL (each is named, with why);
        pass ``metadata=`` for a server that publishes none.
    :raises UnsupportedServer: the issuer is not https, or the server offers no safe login
        (no S256 PKCE, no code flow, no registration endpoint without ``client_id``).
    :raises RegistrationError: dynamic registration was refused.
    :raises ClientRejected: the server refused the client before the browser opened (an
        unknown or stale ``client_id``), and it cannot be replaced by registering again.
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
    issuer = check_issuer(issuer)
    _check_arguments(client_id, client_secret, resource, timeout)
    registration_given = _check_client(client, issuer)
    metadata_given = None if metadata is None else given_metadata(metadata, issuer)
    if config is None:
        config = CallbackConfig()
    if not paste:
        read_line = None
    elif read_line is None:
        read_line = TerminalLines()
    async with open_receiver(config) as receiver:
        redirect_uri = receiver.redirect_uri
        step(on_step, "bind", f"receiver listening on {redirect_uri}")
        async with Client(
            issuer=issuer, redirect_uri=redirect_uri, scope=scope, transport=transport
        ) as oauth:
            server = metadata_given or await discover(oauth, issuer)
            check_server(server)
            step(on_step, "discovery", f"metadata from {server.url}")
            registration, vouched = await choose_client(
                oauth,
                server,
                redirect_uri,
                issuer=issuer,
                app_name=config.app_name,
                client_id=client_id,
                client_secret=client_secret,
                registration=registration_given,
                scope=scope,
                resource=resource,
                on_step=on_step,
            )
            # RFC 9207 §2.4: a present iss must be this issuer's, whatever the server
            # advertises; a missing one is refused too when the server promises iss. The
            # receiver refuses either with its 400 page. The page of a code waits for the
            # token exchange (finish() below), so it says "Signed in" only once a token did
            # arrive.
            pending = receiver.expect(issuer=issuer, require_iss=server.issues_iss, hold_page=True)
            code_verifier = generate_token(VERIFIER_LENGTH)
            # OIDC Core §3.1.2.1: with scope openid, a nonce binds the ID token to this login.
            nonce = generate_token(32) if "openid" in (scope or "").split() else None
            use_dpop = server_supports_dpop(server.document) if dpop is None else dpop
            dpop_key = _new_dpop_key() if use_dpop else None
            url = oauth.authorization_url(
                server.authorization_endpoint,
                state=pending.state,
                code_verifier=code_verifier,
                resource=resource,
                nonce=nonce,
                dpop_jkt=None if dpop_key is None else dpop_key.jkt,
            )
            check_pkce(url, code_verifier)
            if _use_par(server, par):
                assert server.par_endpoint is not None  # noqa: S101  (_use_par checked it)
                url = await oauth.push_authorization(server.par_endpoint, url)
                check_browser_url(url)
            else:
                check_browser_url(url)
                if not vouched:
                    # Fail in seconds, not at the timeout, when the server will not send the
                    # user back (a stale client_id). Not needed for a client the server just
                    # registered or was asked about; with PAR the push checked the client.
                    await oauth.preflight(url, redirect_uri, oauth.client_id)
            # The launch runs beside the wait (an opener may load the whole page before it
            # returns, and the page waits for the token); its task group also owns the
            # private redirect page the default launcher writes, removed when this ends.
            async with background() as browser:
                response, launched = await _send_user_and_wait(
                    url,
                    server,
                    receiver,
                    pending,
                    open_browser,
                    paste,
                    show_url,
                    on_step,
                    timeout,
                    read_line,
                    browser,
                    browser_command,
                    oauth.warm_up,
                )
                checked = ", iss checked (RFC 9207)" if server.issues_iss else ""
                step(on_step, "callback", f"authorization code received{checked}")
                try:
                    token = await oauth.exchange(
                        server.token_endpoint,
                        code=response.code,
                        code_verifier=code_verifier,
                        redirect_uri=redirect_uri,
                        resource=resource,
                        dpop_key=dpop_key,
                    )
                    token.client = registration
                    await _check_id_token(oauth, server, issuer, token, nonce)
                except Exception as exc:
                    pending.finish(ok=False, message=failure_page_text(exc, config.app_name))
                    await _browser_done(launched)
                    raise
                except BaseException as exc:  # cancelled: say so, and leave at once
                    pending.finish(ok=False, message=failure_page_text(exc, config.app_name))
                    raise
                pending.finish(ok=True)
                step(on_step, "token", f"{token.token_type} token from {server.token_endpoint}")
                await _browser_done(launched)
                return token


def _new_dpop_key() -> DPoPKey:
    # Only logins that use DPoP pay for the JOSE and cryptography imports.
    from ._dpop import DPoPKey

    return DPoPKey.generate()


async def _browser_done(launched: anyio.Event | None) -> None:
    """Give an opener that loads the whole page (a test browser, automation) the moment it
    needs to receive the page finish() just released, instead of cancelling it mid-read."""
    if launched is not None:
        with anyio.move_on_after(_BROWSER_GRACE):
            await launched.wait()


def failure_page_text(exc: BaseException, app_name: str) -> str:
    """What the browser's page says when the login failed after the code arrived: why, and
    what to do (shown escaped after "Sign-in failed —"). Never a secret: no code, no token."""
    again = f"Start the sign-in again from {app_name}."
    if isinstance(exc, TokenError):
        detail = f": {exc.description}" if exc.description else ""
        return (
            f"the authorization server did not issue a token ({exc.error}{detail}). {again} "
            f"If it keeps failing, {app_name} may need a new client registration."
        )
    if isinstance(exc, IDTokenError):
        return (
            f"the identity token the server sent could not be verified ({exc.reason}), so "
            f"{app_name} did not accept it. {again}"
        )
    if isinstance(exc, ServerUnreachable):
        return (
            f"{app_name} could not reach the authorization server to finish the sign-in. "
            f"Check the network connection, then start the sign-in again."
        )
    if isinstance(exc, OAuthLoopbackError):
        return f"{app_name} could not finish the sign-in ({type(exc).__name__}). {again}"
    if isinstance(exc, Exception):
        return f"{app_name} hit an unexpected error while finishing the sign-in. {again}"
    return f"{app_name} stopped before the sign-in finished. {again}"


async def _check_id_token(
    client: Client, server: Metadata, issuer: str, token: Token, nonce: str | None
) -> None:
    """Validate the ID token, if any, and expose its claims (OIDC Core §3.1.3.7)."""
    id_token = token.get("id_token")
    if id_token is None:
        if nonce is not None:
            logger.info("scope openid was asked for, but the token response has no id_token")
        return
    if not isinstance(id_token, str):
        reason = "malformed"
        raise IDTokenError(
            reason, "The token response's id_token is not a string (OIDC Core §3.1.3.3)."
        )
    if server.jwks_uri is None:
        reason = "jwks"
        raise IDTokenError(
            reason,
            f"The server sent an ID token, but its metadata ({server.url}) names no jwks_uri to "
            f"check its signature with (RFC 8414 §2), so it was not trusted.",
        )
    jwks_uri = server.jwks_uri
    from ._idtoken import validate_id_token_fetching_jwks  # the JOSE import, only for ID tokens

    async def fetch_jwks() -> Mapping[str, object]:
        reply = await client.get(jwks_uri)
        document = json_object(reply) if reply.status_code == 200 else None
        if document is None:
            reason = "jwks"
            raise IDTokenError(
                reason,
                f"The server's JWKS at {jwks_uri} could not be read (HTTP {reply.status_code}).",
            )
        return document

    # The keys as fetched now; a kid they lack (the server rotated behind a cache) earns
    # exactly one more fetch, never more.
    token.id_token_claims = MappingProxyType(
        await validate_id_token_fetching_jwks(
            id_token,
            issuer=issuer,
            client_id=client.client_id,
            nonce=nonce,
            jwks=await fetch_jwks(),
            fetch_jwks=fetch_jwks,
            access_token=token.access_token,
        )
    )


def _use_par(server: Metadata, par: bool | None) -> bool:
    """Whether to push the request (RFC 9126); refuse combinations that cannot work."""
    if par is None:
        return server.par_endpoint is not None
    if par and server.par_endpoint is None:
        msg = (
            f"par=True, but the server's metadata ({server.url}) offers no "
            f"pushed_authorization_request_endpoint (RFC 9126 §5). Pass par=None to push only "
            f"where offered."
        )
        raise UnsupportedServer(msg)
    if not par and server.require_par:
        msg = (
            f"The server requires pushed authorization requests "
            f"(require_pushed_authorization_requests in {server.url}, RFC 9126 §5), but "
            f"par=False. Pass par=None (the default) so the request is pushed."
        )
        raise UnsupportedServer(msg)
    return par


def _check_arguments(
    client_id: str | None, client_secret: str | None, resource: str | None, timeout: float | None
) -> None:
    """Refuse bad arguments before anything is bound or sent."""
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


def _check_client(client: object, issuer: str) -> ClientRegistration | None:
    """``client=`` is an earlier login's registration at this very issuer, never another's."""
    if client is None:
        return None
    if not isinstance(client, ClientRegistration):
        msg = (
            f"client= takes the ClientRegistration of an earlier login (token.client), not "
            f"{type(client).__name__}; pass a client ID as client_id= instead."
        )
        raise TypeError(msg)
    if client.issuer != issuer:
        msg = (
            f"client= was registered at {client.issuer!r}, not at {issuer!r}: a registration "
            f"is never used with another issuer. Pass the registration of {issuer!r}, or none."
        )
        raise ValueError(msg)
    return client


async def _send_user_and_wait(
    url: str,
    server: Metadata,
    receiver: CallbackReceiver,
    pending: PendingCallback,
    open_browser: BrowserOpener | None,
    paste: bool,
    show_url: ShowURL | None,
    on_step: StepCallback | None,
    wait_seconds: float | None,
    read_line: ReadLine | None,
    browser: TaskGroup,
    browser_command: str | None = None,
    warm_up: Callable[[], Coroutine[Any, Any, None]] | None = None,
) -> tuple[AuthorizationResponse, anyio.Event | None]:
    """Show the URL and/or open the browser, and wait for the response meanwhile.

    The opener runs in ``browser`` beside the wait: a browser that gives up (returns False
    with the URL shown nowhere) or an opener that raises ends the wait with that error.
    ``warm_up`` (loading the token client) starts in ``browser`` once the user has been sent
    (the opener returned, or the URL was shown for pasting), so it never delays the browser.
    Returns the response and the event set once the opener returned (None: no opener).
    """
    endpoint = server.authorization_endpoint.partition("?")[0]
    redirect_uri = receiver.redirect_uri
    first_prompt = PASTE_PROMPT.format(prefix=redirect_uri)
    if paste and show_url is None:
        first_prompt = f"Open this address in a browser to sign in:\n\n  {url}\n\n{first_prompt}"
    if paste and open_browser is None:
        if show_url is not None:
            show_url(url)
        step(on_step, "redirect", f"waiting for the user to open {endpoint}")
        if warm_up is not None:
            browser.start_soon(warm_up)
        pasted = await wait_for_response(receiver, pending, wait_seconds, read_line, first_prompt)
        return pasted, None
    announced = False

    def announce() -> None:
        nonlocal announced
        if not announced:
            announced = True
            logger.info("sent the browser to %s", endpoint)
            step(on_step, "redirect", f"browser sent to {endpoint}")

    failure: list[Exception] = []
    response: AuthorizationResponse | None = None
    launched = anyio.Event()
    with anyio.CancelScope() as waiting:

        async def launch(*, task_status: anyio.abc.TaskStatus[None]) -> None:
            task_status.started()
            try:
                opened = await launch_browser(
                    url, open_browser, task_group=browser, browser_command=browser_command
                )
            except Exception as exc:  # noqa: BLE001  deferred re-raise: `raise failure[0]` below
                failure.append(exc)
                waiting.cancel()
                return
            finally:
                launched.set()
            if warm_up is not None:
                browser.start_soon(warm_up)
            if not opened and show_url is None and not paste:
                msg = (
                    "Could not open a browser for the login, and the authorization URL was "
                    "not shown anywhere. Pass show_url= (e.g. print) so the user can open it "
                    "by hand, or paste=True for a session without a browser (CLI: "
                    "--no-browser)."
                )
                failure.append(BrowserUnavailable(msg))
                waiting.cancel()
                return
            announce()

        # Started (running) before the URL is shown: whatever interrupts the login from
        # here on finds a task to cancel, never a coroutine that was not yet awaited.
        await browser.start(launch)
        if show_url is not None:
            show_url(url)
        try:
            response = await wait_for_response(
                receiver, pending, wait_seconds, read_line, first_prompt, launched
            )
        except Exception:
            # Refused at the receiver (denied, another issuer): its page is on its way.
            await _browser_done(launched)
            raise
    if failure and response is None:
        raise failure[0]
    # The response may come first: an opener that loads the whole page returns only then.
    announce()
    assert response is not None  # noqa: S101  (the wait returned, or a failure was raised)
    return response, launched
