"""oauth_loopback.mcp in isolation: handlers, stale-registration rules, sticky port.

The real SDK client against a real MCP server is in test_mcp_e2e.py; here the browser is a
direct GET to the receiver, so each rule is checked on its own, on asyncio and trio.
"""

from __future__ import annotations

import importlib
import logging
import socket
import sys
import time
from collections.abc import Callable
from urllib.parse import quote, urlencode

import anyio
import pytest
from mcp.client.auth import OAuthClientProvider
from mcp.shared.auth import (
    AuthorizationCodeResult,
    OAuthClientInformationFull,
    OAuthClientMetadata,
    OAuthMetadata,
    OAuthToken,
)
from pydantic import AnyHttpUrl, AnyUrl

from oauth_loopback import (
    AuthorizationDenied,
    CallbackConfig,
    CallbackPortInUse,
    CallbackTimeout,
    InvalidCallbackConfig,
    IssuerMismatch,
)
from oauth_loopback._login._browser import UnsafeBrowserURL
from oauth_loopback.mcp import (
    REPLACE_ON_LOGIN,
    ExpiringToken,
    InvalidAuthorizationURL,
    LoopbackOAuth,
    RedirectAwareTokenStorage,
    loopback_oauth,
    registered_port,
)
from oauth_loopback.mcp._registration import (
    Verdict,
    judge_registration,
    loopback_port,
    registration_kind,
)
from tests._http import get

pytestmark = pytest.mark.anyio

AS = "https://as.example"


# --- pure rules -------------------------------------------------------------------------

A = "http://127.0.0.1:40001/callback"
B = "http://127.0.0.1:40002/callback"


PORTLESS = "http://127.0.0.1/callback"


@pytest.mark.parametrize(
    ("registered", "app_type", "keep_native", "verdict"),
    [
        pytest.param([A], "native", False, Verdict.EXACT, id="exact"),
        pytest.param([A], None, False, Verdict.EXACT, id="exact-any-type"),
        pytest.param([B, A], "web", False, Verdict.EXACT, id="listed-among-others"),
        pytest.param([PORTLESS], "native", False, Verdict.ANY_PORT, id="portless"),
        pytest.param([PORTLESS], None, False, Verdict.ANY_PORT, id="portless-any-type"),
        pytest.param([B, PORTLESS], "web", False, Verdict.ANY_PORT, id="portless-among-others"),
        pytest.param(
            ["http://127.0.0.1/other"], "native", False, Verdict.STALE, id="portless-other-path"
        ),
        pytest.param(
            ["http://[::1]/callback"], "native", False, Verdict.STALE, id="portless-other-host"
        ),
        pytest.param(
            ["http://127.0.0.1/callback?x=1"], "native", False, Verdict.STALE, id="portless-query"
        ),
        pytest.param([], "native", False, Verdict.UNLISTED, id="no-uris"),
        pytest.param(None, None, False, Verdict.UNLISTED, id="uris-absent"),
        pytest.param([B], "native", True, Verdict.PORT_ONLY, id="native-port-only"),
        pytest.param(
            [B, "http://127.0.0.1:40003/callback"],
            "native",
            True,
            Verdict.PORT_ONLY,
            id="native-several-ports",
        ),
        pytest.param([B], "native", False, Verdict.STALE, id="native-not-kept-by-default"),
        pytest.param([B], "web", True, Verdict.STALE, id="web-client"),
        pytest.param([B], None, True, Verdict.STALE, id="no-application-type"),
        pytest.param(
            ["http://127.0.0.1:40002/other"], "native", True, Verdict.STALE, id="other-path"
        ),
        pytest.param(
            ["http://localhost:40002/callback"], "native", True, Verdict.STALE, id="other-host"
        ),
        pytest.param(
            [B, "https://app.example/cb"], "native", True, Verdict.STALE, id="one-non-loopback"
        ),
        pytest.param(
            ["http://127.0.0.1:40002/callback?x=1"], "native", True, Verdict.STALE, id="query"
        ),
    ],
)
def test_judge_registration(
    registered: list[str] | None, app_type: str | None, keep_native: bool, verdict: Verdict
) -> None:
    """A registration may log in when it lists this URI, or it without a port, or none; another port is stale unless kept."""
    assert judge_registration(registered, app_type, A, keep_native=keep_native) is verdict


def test_only_a_stale_registration_is_refused_a_login() -> None:
    """Every verdict but STALE lets the browser login go ahead with the registration."""
    assert [v for v in Verdict if not v.allows_login] == [Verdict.STALE]


def test_judge_registration_for_a_non_loopback_redirect() -> None:
    """A live redirect URI that is not loopback matches only exactly."""
    assert judge_registration([PORTLESS], "native", "https://app.example/cb") is Verdict.STALE


@pytest.mark.parametrize(
    ("client_id", "issued_at", "metadata_url", "kind"),
    [
        pytest.param("c1", 1_700_000_000, None, "dynamic", id="rfc7591-issued-at"),
        pytest.param("c1", None, None, "preregistered", id="hand-made"),
        pytest.param(
            "https://app.example/client.json", None, None, "metadata_document", id="cimd-shape"
        ),
        pytest.param(
            "https://app.example/client.json",
            None,
            "https://app.example/client.json",
            "metadata_document",
            id="cimd-configured",
        ),
        pytest.param(
            "https://as.example/clients/7",
            1_700_000_000,
            None,
            "dynamic",
            id="url-shaped-registered-id",
        ),
        pytest.param("https://app.example/", None, None, "preregistered", id="root-url"),
        pytest.param("http://app.example/c.json", None, None, "preregistered", id="http-url"),
    ],
)
def test_registration_kind(
    client_id: str, issued_at: int | None, metadata_url: str | None, kind: str
) -> None:
    """Only a record of a registration response (client_id_issued_at) counts as replaceable."""
    got = registration_kind(
        client_id, client_id_issued_at=issued_at, client_metadata_url=metadata_url
    )
    assert got == kind


def test_judge_registration_with_ipv6_loopback() -> None:
    """[::1] URIs that differ only by port count as the same loopback redirect."""
    got = judge_registration(
        ["http://[::1]:5000/cb"], "native", "http://[::1]:6000/cb", keep_native=True
    )
    assert got is Verdict.PORT_ONLY


@pytest.mark.parametrize(
    ("registered", "host", "path", "port"),
    [
        pytest.param([A], "127.0.0.1", "/callback", 40001, id="match"),
        pytest.param(
            ["https://app.example/cb", B], "127.0.0.1", "/callback", 40002, id="skips-non-loopback"
        ),
        pytest.param([A], "127.0.0.1", "/other", None, id="other-path"),
        pytest.param([A], "::1", "/callback", None, id="other-host"),
        pytest.param(["http://[::1]:5000/cb"], "::1", "/cb", 5000, id="ipv6"),
        pytest.param(["http://127.0.0.1/callback"], "127.0.0.1", "/callback", None, id="no-port"),
        pytest.param(None, "127.0.0.1", "/callback", None, id="none"),
    ],
)
def test_loopback_port(
    registered: list[str] | None, host: str, path: str, port: int | None
) -> None:
    """The sticky port is read only from a registered URI on the receiver's host and path."""
    assert loopback_port(registered, host, path) == port


# --- helpers ----------------------------------------------------------------------------


def _url(cb: LoopbackOAuth, **params: str) -> str:
    query = {"response_type": "code", "client_id": "c1", "redirect_uri": cb.redirect_uri, **params}
    return f"{AS}/authorize?{urlencode(query)}"


class Opener:
    """Records the URLs it is asked to open; ``then`` plays the browser (or fails)."""

    def __init__(self, then: Callable[[str], object] | None = None) -> None:
        self.urls: list[str] = []
        self.then = then

    async def __call__(self, url: str) -> object:
        self.urls.append(url)
        if self.then is None:
            return True
        result = self.then(url)
        if hasattr(result, "__await__"):
            return await result
        return result


def _info(
    *uris: str,
    app_type: str | None = "native",
    client_id: str = "c1",
    issued_at: int | None = 1_700_000_000,
) -> OAuthClientInformationFull:
    """A stored registration; by default one a registration response made (RFC 7591)."""
    return OAuthClientInformationFull(
        client_id=client_id,
        redirect_uris=[AnyUrl(u) for u in uris],
        application_type=app_type,
        client_id_issued_at=issued_at,
        issuer=AS,
    )


class MemoryStorage:
    def __init__(self, info: OAuthClientInformationFull | None = None) -> None:
        self.tokens: OAuthToken | None = None
        self.client_info = info

    async def get_tokens(self) -> OAuthToken | None:
        return self.tokens

    async def set_tokens(self, tokens: OAuthToken) -> None:
        self.tokens = tokens

    async def get_client_info(self) -> OAuthClientInformationFull | None:
        return self.client_info

    async def set_client_info(self, client_info: OAuthClientInformationFull) -> None:
        self.client_info = client_info


# --- handlers ---------------------------------------------------------------------------


async def test_handlers_return_the_sdk_result_for_the_login() -> None:
    """redirect_handler registers the SDK's state and opens the URL; callback_handler returns code, state, iss."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        await cb.redirect_handler(_url(cb, state="s-1"))
        reply = await get(cb.port, "/callback?code=the-code&state=s-1&iss=" + quote(AS))
        result = await cb.callback_handler()
    assert reply.status == 200
    assert result == AuthorizationCodeResult(code="the-code", state="s-1", iss=AS)


async def test_default_pair_serves_concurrent_logins_by_task() -> None:
    """Two providers sharing cb's handlers log in at once; each task wakes with its own code."""
    results: dict[str, str] = {}
    both_opened = anyio.Event()
    opener = Opener(lambda url: both_opened.set() if len(opener.urls) == 2 else None)
    async with loopback_oauth(open_browser=opener) as cb:

        async def login(state: str) -> None:
            await cb.redirect_handler(_url(cb, state=state))
            results[state] = (await cb.callback_handler()).code

        async with anyio.create_task_group() as tg:
            tg.start_soon(login, "first")
            tg.start_soon(login, "second")
            with anyio.fail_after(5):
                await both_opened.wait()
            assert cb.receiver.pending_count == 2
            # Answer in the opposite order to the one they started in.
            await get(cb.port, "/callback?code=c2&state=second")
            await get(cb.port, "/callback?code=c1&state=first")
    assert results == {"first": "c1", "second": "c2"}


async def test_denied_login_raises_from_callback_handler() -> None:
    """error=access_denied reaches the SDK as AuthorizationDenied from callback_handler."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        await cb.redirect_handler(_url(cb, state="s"))
        await get(cb.port, "/callback?error=access_denied&state=s")
        with pytest.raises(AuthorizationDenied):
            await cb.callback_handler()


async def test_callback_handler_times_out_with_the_config_deadline() -> None:
    """callback_handler waits CallbackConfig.timeout, then raises CallbackTimeout."""
    async with loopback_oauth(CallbackConfig(timeout=0.05), open_browser=Opener()) as cb:
        await cb.redirect_handler(_url(cb, state="s"))
        with pytest.raises(CallbackTimeout):
            await cb.callback_handler()
        assert cb.receiver.pending_count == 0


@pytest.mark.parametrize(
    ("params", "words"),
    [
        pytest.param({}, "no single 'state'", id="no-state"),
        pytest.param({"state": ""}, "no single 'state'", id="empty-state"),
        pytest.param(
            {"state": "s", "redirect_uri": "http://127.0.0.1:1/callback"},
            "redirect_uris",
            id="other-redirect",
        ),
    ],
)
async def test_redirect_handler_refuses_urls_it_cannot_complete(
    params: dict[str, str], words: str
) -> None:
    """A URL without one state, or redirecting elsewhere, is refused before anything is registered or opened."""
    opener = Opener()
    async with loopback_oauth(open_browser=opener) as cb:
        with pytest.raises(InvalidAuthorizationURL, match=words):
            await cb.redirect_handler(_url(cb, **params))
        assert cb.receiver.pending_count == 0
    assert opener.urls == []


async def test_redirect_handler_refuses_repeated_state() -> None:
    """Two state parameters make the login ambiguous: refused."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        with pytest.raises(InvalidAuthorizationURL):
            await cb.redirect_handler(_url(cb, state="a") + "&state=b")


async def test_redirect_handler_refuses_unsafe_urls() -> None:
    """A non-https authorization URL is never handed to the browser launcher."""
    opener = Opener()
    async with loopback_oauth(open_browser=opener) as cb:
        url = _url(cb, state="s").replace(AS, "http://as.example")
        with pytest.raises(UnsafeBrowserURL):
            await cb.redirect_handler(url)
    assert opener.urls == []


async def test_failing_opener_forgets_the_login() -> None:
    """If the opener raises, the error propagates and the state no longer matches a login."""

    def boom(url: str) -> object:
        raise OSError("no display")

    async with loopback_oauth(open_browser=Opener(boom)) as cb:
        with pytest.raises(OSError, match="no display"):
            await cb.redirect_handler(_url(cb, state="s"))
        assert cb.receiver.pending_count == 0
        assert (await get(cb.port, "/callback?code=c&state=s")).status >= 400
        with pytest.raises(RuntimeError, match="redirect_handler"):
            await cb.callback_handler()


async def test_opener_reporting_failure_is_logged_and_login_still_completes(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """An opener returning False logs a warning naming open_browser=; the login still waits."""
    with caplog.at_level(logging.WARNING, logger="oauth_loopback"):
        async with loopback_oauth(open_browser=Opener(lambda url: False)) as cb:
            await cb.redirect_handler(_url(cb, state="s"))
            await get(cb.port, "/callback?code=c&state=s")
            assert (await cb.callback_handler()).code == "c"
    assert "open_browser=" in caplog.text
    assert "state=s" not in caplog.text


async def test_redirect_again_in_the_same_task_replaces_the_unfinished_login() -> None:
    """A login abandoned between the two handlers is forgotten when the task starts the next one."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        await cb.redirect_handler(_url(cb, state="old"))
        await cb.redirect_handler(_url(cb, state="new"))
        assert cb.receiver.pending_count == 1
        assert (await get(cb.port, "/callback?code=c&state=old")).status >= 400
        await get(cb.port, "/callback?code=c&state=new")
        assert (await cb.callback_handler()).state == "new"


async def test_explicit_issuer_requires_iss() -> None:
    """handlers(issuer=...) makes the receiver require RFC 9207 iss; a response without it fails."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        pair = cb.handlers(issuer=AS)
        await pair.redirect_handler(_url(cb, state="s"))
        await get(cb.port, "/callback?code=c&state=s")
        with pytest.raises(IssuerMismatch):
            await pair.callback_handler()


async def _hit(port: int, target: str) -> None:
    """The browser's callback request, sent without waiting for its page: a provider from
    client_provider() holds the page for the token exchange, which these tests never run."""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        await stream.send(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())


def _provider(cb: LoopbackOAuth, *, iss_supported: bool | None) -> OAuthClientProvider:
    provider = cb.client_provider("https://mcp.example/mcp", MemoryStorage())
    provider.context.oauth_metadata = OAuthMetadata.model_validate(
        {
            "issuer": AS,
            "authorization_endpoint": f"{AS}/authorize",
            "token_endpoint": f"{AS}/token",
            "authorization_response_iss_parameter_supported": iss_supported,
        }
    )
    return provider


async def test_issuer_comes_from_metadata_that_advertises_iss() -> None:
    """With metadata advertising iss (RFC 9207 §3), the receiver requires that issuer in the response."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        provider = _provider(cb, iss_supported=True)
        redirect = provider.context.redirect_handler
        callback = provider.context.callback_handler
        assert redirect is not None
        assert callback is not None
        await redirect(_url(cb, state="s"))
        await get(cb.port, "/callback?code=c&state=s&iss=https://evil.example")
        with pytest.raises(IssuerMismatch):
            await callback()
        await redirect(_url(cb, state="t"))
        metadata = provider.context.oauth_metadata
        assert metadata is not None
        await _hit(cb.port, "/callback?code=c&state=t&iss=" + quote(str(metadata.issuer)))
        assert (await callback()).code == "c"


async def test_no_issuer_required_without_iss_support() -> None:
    """Metadata without iss support: a response without iss is accepted (the SDK checks iss itself)."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        provider = _provider(cb, iss_supported=None)
        assert provider.context.redirect_handler is not None
        assert provider.context.callback_handler is not None
        await provider.context.redirect_handler(_url(cb, state="s"))
        await _hit(cb.port, "/callback?code=c&state=s")
        assert (await provider.context.callback_handler()).iss is None


async def test_a_different_iss_is_refused_even_without_iss_support() -> None:
    """Metadata without iss support: a *present* iss of another issuer is still refused (RFC 9207 §2.4)."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        provider = _provider(cb, iss_supported=None)
        assert provider.context.redirect_handler is not None
        assert provider.context.callback_handler is not None
        await provider.context.redirect_handler(_url(cb, state="s"))
        reply = await get(cb.port, "/callback?code=c&state=s&iss=https%3A%2F%2Fevil.example")
        assert reply.status == 400
        assert "Signed in" not in reply.text
        with pytest.raises(IssuerMismatch):
            await provider.context.callback_handler()


# --- wiring -----------------------------------------------------------------------------


async def test_client_metadata_and_provider_use_the_live_redirect_uri() -> None:
    """client_metadata() and client_provider() list the bound redirect URI and wrap the storage."""
    async with loopback_oauth() as cb:
        metadata = cb.client_metadata(client_name="cli")
        assert [str(u) for u in metadata.redirect_uris or ()] == [cb.redirect_uri]
        assert metadata.application_type == "native"
        provider = cb.client_provider("https://mcp.example/mcp", MemoryStorage())
        assert isinstance(provider.context.storage, RedirectAwareTokenStorage)
        assert provider.context.storage.redirect_uri == cb.redirect_uri
        with pytest.raises(TypeError, match="redirect_uris"):
            cb.client_metadata(redirect_uris=["http://127.0.0.1:1/callback"])


async def test_loopback_oauth_takes_a_client_mapping() -> None:
    """A per-server mapping is read with CallbackConfig.from_mapping (camelCase keys)."""
    async with loopback_oauth({"redirectUri": "http://127.0.0.1/oauth/cb", "appName": "cli"}) as cb:
        assert cb.redirect_uri == f"http://127.0.0.1:{cb.port}/oauth/cb"
    with pytest.raises(InvalidCallbackConfig, match="Allowed keys"):
        async with loopback_oauth({"callbackport": 1}):
            pytest.fail("unreachable")
    with pytest.raises(TypeError, match="CallbackConfig or a mapping"):
        async with loopback_oauth(19876):  # type: ignore[arg-type]
            pytest.fail("unreachable")


async def test_busy_redirect_uri_port_is_loud() -> None:
    """A redirectUri pinning a busy port raises CallbackPortInUse; nothing falls back."""
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen(1)
        busy = holder.getsockname()[1]
        with pytest.raises(CallbackPortInUse) as info:
            async with loopback_oauth({"redirectUri": f"http://127.0.0.1:{busy}/callback"}):
                pytest.fail("unreachable")
    assert info.value.port == busy


# --- the storage wrapper: registrations ---------------------------------------------------


async def test_storage_passes_a_matching_registration_and_tokens_through() -> None:
    """The wrapper returns a registration listing this redirect URI, and stores what the SDK stores."""
    inner = MemoryStorage(_info(A))
    storage = RedirectAwareTokenStorage(inner, A)
    assert await storage.get_client_info() is inner.client_info
    token = OAuthToken(access_token="t", token_type="Bearer")
    await storage.set_tokens(token)
    assert await storage.get_tokens() == token
    new = _info(B)
    await storage.set_client_info(new)
    assert inner.client_info is new


async def test_storage_hands_over_a_stale_registration_to_be_replaced_on_login(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A dynamic registration for another port is handed over (it refreshes) bound to REPLACE_ON_LOGIN, and that is logged."""
    inner = MemoryStorage(_info(B))
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        got = await RedirectAwareTokenStorage(inner, A).get_client_info()
    assert got is not None
    assert inner.client_info is not None
    assert got.client_id == inner.client_info.client_id
    assert got.issuer == REPLACE_ON_LOGIN
    assert inner.client_info.issuer == AS  # the stored record is untouched
    assert "it still refreshes tokens" in caplog.text


async def test_the_sdk_drops_a_registration_bound_to_replace_on_login() -> None:
    """The SDK's own SEP-2352 check refuses the marked copy for any issuer (what the replacement relies on)."""
    from mcp.client.auth.utils import credentials_match_issuer

    marked = await RedirectAwareTokenStorage(MemoryStorage(_info(B)), A).get_client_info()
    assert marked is not None
    assert not credentials_match_issuer(marked, AS, None)
    assert not credentials_match_issuer(marked, REPLACE_ON_LOGIN + "/", None)
    assert credentials_match_issuer(_info(B), AS, None)


async def test_storage_never_stores_the_marker() -> None:
    """Should the SDK store the marked copy back, the real issuer binding is what reaches the storage."""
    inner = MemoryStorage(_info(B))
    storage = RedirectAwareTokenStorage(inner, A)
    marked = await storage.get_client_info()
    assert marked is not None
    await storage.set_client_info(marked)
    assert inner.client_info is not None
    assert inner.client_info.issuer == AS


async def test_storage_logs_the_replacement(caplog: pytest.LogCaptureFixture) -> None:
    """When the SDK stores a new registration in place of a stale one, that is logged."""
    inner = MemoryStorage(_info(B))
    storage = RedirectAwareTokenStorage(inner, A)
    await storage.get_client_info()
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        await storage.set_client_info(_info(A, client_id="c2"))
    assert inner.client_info is not None
    assert inner.client_info.client_id == "c2"
    assert "replacing the stale client registration" in caplog.text


@pytest.mark.parametrize(
    ("info", "words"),
    [
        pytest.param(_info(B, issued_at=None), "a pre-registered client", id="preregistered"),
        pytest.param(
            _info(B, client_id="https://app.example/client.json", issued_at=None),
            "a client ID metadata document",
            id="metadata-document",
        ),
    ],
)
async def test_storage_uses_an_irreplaceable_registration_as_it_is(
    info: OAuthClientInformationFull, words: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A pre-registered or metadata-document client for another port is handed over unchanged, and why is logged."""
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        got = await RedirectAwareTokenStorage(MemoryStorage(info), A).get_client_info()
    assert got is info
    assert f"it is {words} and cannot be replaced" in caplog.text


async def test_storage_keeps_a_stale_registration_where_nothing_can_register(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Attached to a provider whose server advertises no registration endpoint, a stale registration is used as it is."""
    storage = RedirectAwareTokenStorage(MemoryStorage(_info(B)), A)
    provider = _bare_provider(storage)
    storage.attach(provider)
    provider.context.oauth_metadata = OAuthMetadata(
        issuer=AnyHttpUrl(AS),
        authorization_endpoint=AnyHttpUrl(f"{AS}/authorize"),
        token_endpoint=AnyHttpUrl(f"{AS}/token"),
    )
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        got = await storage.get_client_info()
    assert got is not None
    assert got.issuer == AS
    assert "advertises no registration endpoint" in caplog.text


async def test_storage_uses_the_providers_metadata_url() -> None:
    """A record whose client_id is the provider's client_metadata_url is a metadata document, whatever its fields."""
    info = _info(B, client_id="https://app.example/c.json")  # even with an issued-at time
    storage = RedirectAwareTokenStorage(MemoryStorage(info), A)
    storage.attach(_bare_provider(storage, client_metadata_url="https://app.example/c.json"))
    assert await storage.get_client_info() is info


@pytest.mark.parametrize(
    "uris", [pytest.param((PORTLESS,), id="portless"), pytest.param((), id="none-listed")]
)
async def test_storage_hands_over_portless_and_unlisted_registrations(
    uris: tuple[str, ...],
) -> None:
    """A registration without a port (RFC 8252 §7.3) or listing no URIs is handed over as it is."""
    info = _info(*uris, issued_at=None)
    assert await RedirectAwareTokenStorage(MemoryStorage(info), A).get_client_info() is info


async def test_storage_keeps_native_registration_on_opt_in(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """keep_native=True keeps a native registration that differs only by port, and logs why."""
    inner = MemoryStorage(_info(B))
    with caplog.at_level(logging.INFO, logger="oauth_loopback"):
        assert (
            await RedirectAwareTokenStorage(inner, A, keep_native=True).get_client_info()
            is inner.client_info
        )
    assert "RFC 8252" in caplog.text


async def test_storage_without_registration() -> None:
    """No stored registration: None, as from the inner storage."""
    assert await RedirectAwareTokenStorage(MemoryStorage(), A).get_client_info() is None


# --- the storage wrapper: token expiry -------------------------------------------------------


def _bare_provider(
    storage: RedirectAwareTokenStorage, client_metadata_url: str | None = None
) -> OAuthClientProvider:
    async def never(*args: object) -> AuthorizationCodeResult:
        pytest.fail("no login in this test")

    return OAuthClientProvider(
        "https://mcp.example/mcp",
        OAuthClientMetadata(redirect_uris=[AnyUrl(A)]),
        storage,
        redirect_handler=never,  # type: ignore[arg-type]
        callback_handler=never,
        client_metadata_url=client_metadata_url,
    )


async def test_stored_tokens_carry_their_absolute_expiry() -> None:
    """set_tokens stores expires_at = now + expires_in; get_tokens gives expires_in back relative to now."""
    inner = MemoryStorage()
    storage = RedirectAwareTokenStorage(inner, A)
    before = time.time()
    await storage.set_tokens(OAuthToken(access_token="t", expires_in=3600, refresh_token="r"))
    stored = inner.tokens
    assert isinstance(stored, ExpiringToken)
    assert stored.expires_at is not None
    assert before + 3600 <= stored.expires_at <= time.time() + 3600
    inner.tokens = stored.model_copy(update={"expires_at": time.time() + 1000})
    loaded = await storage.get_tokens()
    assert loaded is not None
    assert type(loaded) is OAuthToken
    assert loaded.access_token == "t"
    assert loaded.refresh_token == "r"
    assert loaded.expires_in is not None
    assert 990 <= loaded.expires_in <= 1000


@pytest.mark.parametrize("left", [-3600.0, 0.0, 30.0])
async def test_an_expired_token_comes_back_without_its_access_token(left: float) -> None:
    """A stored token past (or within a minute of) its expiry loses its access token, so the SDK refreshes first."""
    inner = MemoryStorage()
    inner.tokens = ExpiringToken(
        access_token="old", refresh_token="r", scope="a b", expires_at=time.time() + left
    )
    loaded = await RedirectAwareTokenStorage(inner, A).get_tokens()
    assert loaded is not None
    assert loaded.access_token == ""
    assert loaded.refresh_token == "r"
    assert loaded.scope == "a b"


async def test_the_sdk_refreshes_a_token_without_an_access_token() -> None:
    """The SDK's own rule: a token with an empty access token is not valid, and refreshes when it can."""
    inner = MemoryStorage(_info(A))
    inner.tokens = ExpiringToken(access_token="old", refresh_token="r", expires_at=0.0)
    storage = RedirectAwareTokenStorage(inner, A)
    context = _bare_provider(storage).context
    context.current_tokens = await storage.get_tokens()
    context.client_info = await storage.get_client_info()
    assert not context.is_token_valid()
    assert context.can_refresh_token()


async def test_a_token_of_unknown_expiry_is_passed_through() -> None:
    """A token stored without the wrapper (a plain OAuthToken) comes back as it was."""
    inner = MemoryStorage()
    inner.tokens = OAuthToken(access_token="t", expires_in=60)
    assert await RedirectAwareTokenStorage(inner, A).get_tokens() is inner.tokens


async def test_attached_storage_hands_the_sdk_the_expiry() -> None:
    """Attached to its provider, loading a token also sets the SDK's expiry, so a long run refreshes in time."""
    inner = MemoryStorage()
    expires_at = time.time() + 7200
    inner.tokens = ExpiringToken(access_token="t", refresh_token="r", expires_at=expires_at)
    storage = RedirectAwareTokenStorage(inner, A)
    provider = storage.attach(_bare_provider(storage))
    await storage.get_tokens()
    assert provider.context.token_expiry_time == pytest.approx(expires_at - 60)


def test_expiring_token_repr_hides_the_tokens() -> None:
    """repr() of a stored token shows neither the access nor the refresh token."""
    token = ExpiringToken(access_token="secret-a", refresh_token="secret-r", expires_at=1.0)
    text = repr(token)
    assert "secret-a" not in text
    assert "secret-r" not in text
    assert "<redacted>" in text
    assert "expires_at=1.0" in text
    assert ExpiringToken.model_validate_json(token.model_dump_json()) == token


# --- client metadata --------------------------------------------------------------------------


async def test_client_metadata_defaults_to_a_public_native_client() -> None:
    """client_metadata() asks for a public native client that may refresh, on the live redirect URI."""
    async with loopback_oauth() as cb:
        metadata = cb.client_metadata(client_name="my-cli")
        assert [str(u) for u in metadata.redirect_uris or ()] == [cb.redirect_uri]
    assert metadata.token_endpoint_auth_method == "none"
    assert metadata.application_type == "native"
    assert metadata.grant_types == ["authorization_code", "refresh_token"]
    assert metadata.client_name == "my-cli"
    sent = metadata.model_dump(mode="json", exclude_none=True)
    assert sent["token_endpoint_auth_method"] == "none"


async def test_client_metadata_fields_override_the_defaults() -> None:
    """Fields passed to client_metadata() win over its defaults."""
    async with loopback_oauth() as cb:
        metadata = cb.client_metadata(
            token_endpoint_auth_method="client_secret_post", grant_types=["authorization_code"]
        )
    assert metadata.token_endpoint_auth_method == "client_secret_post"
    assert metadata.grant_types == ["authorization_code"]


async def test_client_provider_attaches_storage_and_handlers() -> None:
    """cb.client_provider() wraps the storage and attaches it, so the SDK gets stored expiries."""
    inner = MemoryStorage()
    inner.tokens = ExpiringToken(access_token="t", expires_at=time.time() + 7200)
    async with loopback_oauth() as cb:
        provider = cb.client_provider("https://mcp.example/mcp", inner)
        storage = provider.context.storage
        assert isinstance(storage, RedirectAwareTokenStorage)
        assert storage.redirect_uri == cb.redirect_uri
        await storage.get_tokens()
    assert provider.context.token_expiry_time is not None


async def test_redirect_handler_warns_of_a_registration_without_this_uri(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A browser login with a registration that does not list the live URI is logged with the fixes."""
    async with loopback_oauth(open_browser=Opener()) as cb:
        provider = cb.client_provider("https://mcp.example/mcp", MemoryStorage())
        provider.context.client_info = _info(B, issued_at=None)
        handlers = cb.handlers()
        handlers.attach(provider)
        with caplog.at_level(logging.WARNING, logger="oauth_loopback"):
            await handlers.redirect_handler(_url(cb, state="s-warn"))
        assert "does not list the redirect URI" in caplog.text
        assert "callbackPort" in caplog.text
        caplog.clear()
        provider.context.client_info = _info(PORTLESS)
        with caplog.at_level(logging.WARNING, logger="oauth_loopback"):
            await handlers.redirect_handler(_url(cb, state="s-ok"))
        assert caplog.text == ""


# --- sticky port ------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_prefer_port_from_storage_rebinds_the_registered_port() -> None:
    """prefer_port_from= reads the stored registration's port and listens there when it is free."""
    port = _free_port()
    storage = MemoryStorage(_info(f"http://127.0.0.1:{port}/callback"))
    assert await registered_port(storage) == port
    async with loopback_oauth(prefer_port_from=[MemoryStorage(), storage]) as cb:
        assert cb.port == port
        assert (
            await RedirectAwareTokenStorage(storage, cb.redirect_uri).get_client_info() is not None
        )


async def test_prefer_port_from_is_ignored_for_a_fixed_port() -> None:
    """With a fixed port configured, the stored port is not consulted."""
    fixed = _free_port()
    storage = MemoryStorage(_info(f"http://127.0.0.1:{_free_port()}/callback"))
    async with loopback_oauth(CallbackConfig(port=fixed), prefer_port_from=storage) as cb:
        assert cb.port == fixed
        assert cb.receiver.config.prefer_port is None


async def test_prefer_port_from_without_registration_is_ephemeral() -> None:
    """No stored registration: an ordinary ephemeral port."""
    async with loopback_oauth(prefer_port_from=MemoryStorage()) as cb:
        assert cb.receiver.config.prefer_port is None
        assert cb.port > 0


def test_missing_mcp_package_gives_an_actionable_import_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Without the mcp package, importing oauth_loopback.mcp says to install oauth-loopback[mcp]."""
    for name in list(sys.modules):
        if name == "mcp" or name.startswith("mcp."):
            monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "mcp", None)
    monkeypatch.delitem(sys.modules, "oauth_loopback.mcp")
    with pytest.raises(ImportError, match=r"oauth-loopback\[mcp\]"):
        importlib.import_module("oauth_loopback.mcp")
    monkeypatch.undo()
    assert importlib.import_module("oauth_loopback.mcp").loopback_oauth is loopback_oauth
