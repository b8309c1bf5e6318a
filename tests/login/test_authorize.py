"""authorize(): discovery, registration, PKCE, the browser, the paste fallback, the exchange.

Two kinds of authorization server: a scripted one behind ``httpx2.MockTransport`` (every
request and reply under the test's control), and the embedded
:class:`oauth_loopback.testing.AuthorizationServer` for end-to-end runs. The browser is a
stand-in that sends the callback to the live receiver over real loopback HTTP.
"""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode, urlsplit

import anyio
import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback import _errors
from oauth_loopback._login import _authorize as authorize_module
from oauth_loopback._login import _client, _metadata
from oauth_loopback._login import _token as _token_module
from oauth_loopback._login._browser import UnsafeBrowserURL, check_browser_url, launch_browser
from tests import _http

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example"


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


@dataclass
class ScriptedServer:
    """An authorization server answered by a MockTransport handler, fully scripted."""

    issuer: str = ISSUER
    registration: bool = True
    issue_iss: bool = True
    code_challenge_methods: list[str] | None = field(default_factory=lambda: ["S256"])
    metadata_issuer: str | None = None
    metadata_status: int = 200
    token_status: int = 200
    token_body: Any = None
    registration_status: int = 201
    registration_body: Any = None
    authorization_endpoint: str | None = None
    #: What the authorization endpoint answers the preflight (status, Location or None).
    preflight: tuple[int, str | None] = (200, None)
    requests: list[httpx2.Request] = field(default_factory=list)
    registered: list[dict[str, Any]] = field(default_factory=list)
    token_forms: list[dict[str, str]] = field(default_factory=list)
    authorization_params: list[dict[str, str]] = field(default_factory=list)

    @property
    def metadata(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "issuer": self.metadata_issuer or self.issuer,
            "authorization_endpoint": self.authorization_endpoint or f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "response_types_supported": ["code"],
        }
        if self.code_challenge_methods is not None:
            document["code_challenge_methods_supported"] = self.code_challenge_methods
        if self.registration:
            document["registration_endpoint"] = f"{self.issuer}/register"
        if self.issue_iss:
            document["authorization_response_iss_parameter_supported"] = True
        return document

    def transport(self) -> httpx2.MockTransport:
        return httpx2.MockTransport(self.handle)

    def handle(self, request: httpx2.Request) -> httpx2.Response:
        self.requests.append(request)
        path = request.url.path
        if path == "/.well-known/oauth-authorization-server":
            if self.metadata_status != 200:
                return httpx2.Response(self.metadata_status, text="no")
            return httpx2.Response(200, json=self.metadata)
        if path == "/authorize" and request.method == "GET":
            status, location = self.preflight
            headers = {"Location": location} if location else {}
            return httpx2.Response(status, headers=headers, text="the server's sign-in page")
        if path == "/register" and request.method == "POST":
            body = json.loads(request.content)
            self.registered.append(body)
            if self.registration_body is not None:
                return httpx2.Response(self.registration_status, json=self.registration_body)
            reply = {**body, "client_id": "dyn-client"}
            return httpx2.Response(self.registration_status, json=reply)
        if path == "/token" and request.method == "POST":
            form = dict(parse_qsl(request.content.decode()))
            self.token_forms.append(form)
            if self.token_body is not None:
                if isinstance(self.token_body, str):
                    return httpx2.Response(self.token_status, text=self.token_body)
                return httpx2.Response(self.token_status, json=self.token_body)
            params = self.authorization_params[-1]
            if _s256(form.get("code_verifier", "")) != params["code_challenge"]:
                return httpx2.Response(400, json={"error": "invalid_grant"})
            return httpx2.Response(
                200,
                json={
                    "access_token": "at-secret-value",
                    "token_type": "Bearer",
                    "expires_in": 3600,
                    "refresh_token": "rt-secret-value",
                    "scope": params.get("scope", ""),
                },
            )
        return httpx2.Response(404, text="not found")

    def browser(
        self, *, answer: dict[str, str] | None = None, iss: str | None = "issuer"
    ) -> Callable[[str], Any]:
        """A browser stand-in: the server 'approves' and the browser hits the receiver."""

        async def open_browser(url: str) -> bool:
            params = dict(parse_qsl(urlsplit(url).query))
            self.authorization_params.append(params)
            reply = {"state": params["state"], **(answer or {"code": "the-code"})}
            if iss is not None:
                reply["iss"] = self.issuer if iss == "issuer" else iss
            redirect = urlsplit(params["redirect_uri"])
            assert redirect.port is not None
            response = await _http.get(redirect.port, f"{redirect.path}?{urlencode(reply)}")
            assert response.status in (200, 400, 403)
            return True

        return open_browser

    def callback_url(self, *, iss: bool = True) -> str:
        """The address the browser would have been redirected to, for pasting."""
        params = self.authorization_params[-1]
        reply = {"code": "pasted-code", "state": params["state"]}
        if iss:
            reply["iss"] = self.issuer
        return f"{params['redirect_uri']}?{urlencode(reply)}"


async def _authorize(server: ScriptedServer, **kwargs: Any) -> ol.Token:
    kwargs.setdefault("open_browser", server.browser())
    kwargs.setdefault("timeout", 10)
    return await ol.authorize(server.issuer, transport=server.transport(), **kwargs)


# --- the happy paths ------------------------------------------------------------------------


async def test_dynamic_registration_then_login_returns_the_token() -> None:
    """With no client_id, the app registers as a native public client with the live URI."""
    server = ScriptedServer()
    steps: list[str] = []
    token = await _authorize(server, scope="read write", on_step=lambda n, d: steps.append(n))
    assert token.access_token == "at-secret-value"
    assert token.token_type == "Bearer"
    assert token.expires_in == 3600
    assert token.refresh_token == "rt-secret-value"
    assert token.scope == "read write"
    assert steps == ["bind", "discovery", "registration", "redirect", "callback", "token"]
    (registration,) = server.registered
    redirect_uri = server.authorization_params[0]["redirect_uri"]
    assert registration["redirect_uris"] == [redirect_uri]
    assert redirect_uri.startswith("http://127.0.0.1:")
    assert registration["application_type"] == "native"
    assert registration["token_endpoint_auth_method"] == "none"
    assert registration["grant_types"] == ["authorization_code", "refresh_token"]
    assert registration["response_types"] == ["code"]
    assert registration["client_name"] == "the application"
    assert server.authorization_params[0]["client_id"] == "dyn-client"


async def test_token_request_carries_verifier_redirect_uri_and_grant_type() -> None:
    """The token request body has grant_type=authorization_code, the code, the same
    redirect_uri and the PKCE verifier whose S256 is the challenge sent earlier."""
    server = ScriptedServer()
    await _authorize(server)
    (form,) = server.token_forms
    params = server.authorization_params[0]
    assert form["grant_type"] == "authorization_code"
    assert form["code"] == "the-code"
    assert form["redirect_uri"] == params["redirect_uri"]
    assert _s256(form["code_verifier"]) == params["code_challenge"]
    assert 43 <= len(form["code_verifier"]) <= 128
    assert params["code_challenge_method"] == "S256"
    assert form["client_id"] == "dyn-client"


async def test_pre_registered_confidential_client_skips_registration() -> None:
    """A given client_id is used as is; a client_secret goes in HTTP Basic auth."""
    server = ScriptedServer(registration=False)
    token = await _authorize(server, client_id="my-app", client_secret="s3cret")
    assert token.access_token == "at-secret-value"
    assert not server.registered
    assert server.authorization_params[0]["client_id"] == "my-app"
    token_request = next(r for r in server.requests if r.url.path == "/token")
    expected = base64.b64encode(b"my-app:s3cret").decode()
    assert token_request.headers["authorization"] == f"Basic {expected}"


async def test_resource_goes_to_the_authorization_and_token_requests() -> None:
    """RFC 8707: resource is in the authorization URL and in the token request."""
    server = ScriptedServer()
    await _authorize(server, resource="https://mcp.example/mcp")
    assert server.authorization_params[0]["resource"] == "https://mcp.example/mcp"
    assert server.token_forms[0]["resource"] == "https://mcp.example/mcp"


async def test_show_url_receives_the_full_authorization_url() -> None:
    """show_url gets the authorization URL (state, PKCE challenge) before the browser opens."""
    server = ScriptedServer()
    shown: list[str] = []
    await _authorize(server, show_url=shown.append)
    (url,) = shown
    query = parse_qs(urlsplit(url).query)
    assert url.startswith(f"{ISSUER}/authorize?")
    assert query["state"] == [server.authorization_params[0]["state"]]
    assert query["code_challenge_method"] == ["S256"]


async def test_missing_iss_is_accepted_when_the_server_does_not_advertise_it() -> None:
    """Without authorization_response_iss_parameter_supported, no iss is required."""
    server = ScriptedServer(issue_iss=False)
    token = await _authorize(server, open_browser=server.browser(iss=None))
    assert token.access_token == "at-secret-value"


async def test_present_wrong_iss_is_refused_even_when_not_advertised() -> None:
    """RFC 9207 §2.4: an iss that is present must match, advertised or not."""
    server = ScriptedServer(issue_iss=False)
    with pytest.raises(ol.IssuerMismatch):
        await _authorize(server, open_browser=server.browser(iss="https://evil.example"))
    assert not server.token_forms


async def test_present_wrong_iss_on_an_error_response_is_an_issuer_mismatch() -> None:
    """An error response from another issuer is reported as the mix-up it is."""
    server = ScriptedServer(issue_iss=False)
    browser = server.browser(answer={"error": "access_denied"}, iss="https://evil.example")
    with pytest.raises(ol.IssuerMismatch):
        await _authorize(server, open_browser=browser)


@pytest.mark.parametrize("seconds", [0, -1, True, "5"])
async def test_bad_timeout_is_refused_before_anything_starts(seconds: object) -> None:
    """timeout must be a positive number; nothing is bound or requested otherwise."""
    server = ScriptedServer()
    with pytest.raises(ValueError, match="timeout"):
        await ol.authorize(ISSUER, transport=server.transport(), timeout=seconds)  # type: ignore[arg-type]
    assert not server.requests


# --- refusals from the server or the user ---------------------------------------------------


async def test_user_denial_raises_authorization_denied() -> None:
    """error=access_denied on the callback raises AuthorizationDenied; no token request."""
    server = ScriptedServer()
    browser = server.browser(answer={"error": "access_denied", "error_description": "nope"})
    with pytest.raises(ol.AuthorizationDenied) as caught:
        await _authorize(server, open_browser=browser)
    assert caught.value.description == "nope"
    assert not server.token_forms


async def test_wrong_iss_raises_issuer_mismatch() -> None:
    """RFC 9207: the server advertises iss, the response names another issuer: refused."""
    server = ScriptedServer()
    with pytest.raises(ol.IssuerMismatch) as caught:
        await _authorize(server, open_browser=server.browser(iss="https://evil.example"))
    assert caught.value.expected == ISSUER
    assert caught.value.received == "https://evil.example"
    assert not server.token_forms


async def test_missing_iss_raises_issuer_mismatch_when_advertised() -> None:
    """RFC 9207: an advertised iss that is missing from the response is refused."""
    server = ScriptedServer()
    with pytest.raises(ol.IssuerMismatch):
        await _authorize(server, open_browser=server.browser(iss=None))


async def test_token_endpoint_error_carries_rfc6749_fields() -> None:
    """A §5.2 error reply becomes TokenError with error, description, uri and status."""
    server = ScriptedServer(
        token_status=400,
        token_body={
            "error": "invalid_grant",
            "error_description": "code expired",
            "error_uri": "https://as.example/errors/grant",
        },
    )
    with pytest.raises(ol.TokenError) as caught:
        await _authorize(server)
    error = caught.value
    assert isinstance(error, ol.AuthorizationError)
    assert (error.error, error.description, error.uri) == (
        "invalid_grant",
        "code expired",
        "https://as.example/errors/grant",
    )
    assert error.status_code == 400
    assert "invalid_grant" in str(error)
    assert "client_id" in str(error)  # the message says what to check


async def test_token_endpoint_garbage_is_a_token_error() -> None:
    """A reply that is not JSON (a gateway's error page) is TokenError(invalid_token_response)."""
    server = ScriptedServer(token_status=502, token_body="<html>Bad gateway</html>")
    with pytest.raises(ol.TokenError) as caught:
        await _authorize(server)
    assert caught.value.error == "invalid_token_response"
    assert caught.value.status_code == 502


async def test_token_without_access_token_is_a_token_error() -> None:
    """A 200 reply without access_token is refused (RFC 6749 §5.1)."""
    server = ScriptedServer(token_body={"token_type": "Bearer"})
    with pytest.raises(ol.TokenError, match="access_token") as caught:
        await _authorize(server)
    assert caught.value.error == "invalid_token_response"


async def test_registration_refusal_raises_registration_error() -> None:
    """An RFC 7591 §3.2.2 error reply becomes RegistrationError naming the fix."""
    server = ScriptedServer(
        registration_status=400,
        registration_body={"error": "invalid_redirect_uri", "error_description": "no"},
    )
    with pytest.raises(ol.RegistrationError, match="client_id=") as caught:
        await _authorize(server)
    assert caught.value.error == "invalid_redirect_uri"
    assert caught.value.status_code == 400


async def test_registration_with_another_redirect_uri_is_refused() -> None:
    """A server that registers a different redirect URI is caught before the browser opens."""
    server = ScriptedServer(
        registration_body={"client_id": "x", "redirect_uris": ["http://127.0.0.1:1/cb"]}
    )
    opened: list[str] = []
    with pytest.raises(ol.RegistrationError, match="redirect_uris"):
        await _authorize(server, open_browser=opened.append)
    assert not opened


async def test_no_registration_endpoint_without_client_id_is_refused() -> None:
    """No registration_endpoint and no client_id: UnsupportedServer says to pass client_id."""
    server = ScriptedServer(registration=False)
    with pytest.raises(ol.UnsupportedServer, match="client_id="):
        await _authorize(server)


async def test_server_without_s256_is_refused() -> None:
    """Metadata listing challenge methods without S256 is refused before anything else."""
    server = ScriptedServer(code_challenge_methods=["plain"])
    with pytest.raises(ol.UnsupportedServer, match="S256"):
        await _authorize(server)
    assert not server.registered


async def test_login_times_out_when_no_callback_arrives() -> None:
    """No callback within timeout: CallbackTimeout (a TimeoutError)."""
    server = ScriptedServer()
    with pytest.raises(ol.CallbackTimeout):
        await _authorize(server, open_browser=lambda url: True, timeout=0.2)


# --- discovery ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("issuer", "expected"),
    [
        pytest.param(
            "https://h",
            [
                "https://h/.well-known/oauth-authorization-server",
                "https://h/.well-known/openid-configuration",
            ],
            id="no-path",
        ),
        pytest.param(
            "https://h/tenant/1/",
            [
                "https://h/.well-known/oauth-authorization-server/tenant/1",
                "https://h/.well-known/openid-configuration/tenant/1",
                "https://h/tenant/1/.well-known/openid-configuration",
            ],
            id="path-trailing-slash",
        ),
    ],
)
def test_discovery_urls_are_path_aware(issuer: str, expected: list[str]) -> None:
    """RFC 8414 §3.1 inserts the well-known segment before the path; OIDC appends it."""
    assert _metadata.discovery_urls(issuer) == expected


async def test_discovery_failure_names_every_url_tried() -> None:
    """When no metadata answers, DiscoveryError names each URL and what it answered."""
    server = ScriptedServer(metadata_status=404)
    with pytest.raises(ol.DiscoveryError) as caught:
        await _authorize(server)
    message = str(caught.value)
    assert "https://as.example/.well-known/oauth-authorization-server (HTTP 404)" in message
    assert "https://as.example/.well-known/openid-configuration (HTTP 404)" in message
    assert [url for url, _ in caught.value.tried] == _metadata.discovery_urls(ISSUER)


async def test_metadata_with_another_issuer_is_not_used() -> None:
    """RFC 8414 §3.3: metadata whose issuer differs from the one asked for is refused."""
    server = ScriptedServer(metadata_issuer="https://other.example")
    with pytest.raises(ol.DiscoveryError, match="other.example"):
        await _authorize(server)


async def test_unreachable_server_is_a_discovery_error() -> None:
    """Connection failures are reported per URL, not as an httpx2 exception."""

    asked: list[str] = []

    def refuse(request: httpx2.Request) -> httpx2.Response:
        asked.append(str(request.url))
        raise httpx2.ConnectError("connection refused", request=request)

    with pytest.raises(ol.DiscoveryError, match="ConnectError") as caught:
        await ol.authorize(ISSUER, transport=httpx2.MockTransport(refuse), timeout=1)
    # The host did not answer: the other URL is named, but not asked (no doubled wait).
    assert asked == [f"{ISSUER}/.well-known/oauth-authorization-server"]
    assert caught.value.tried[1] == (
        f"{ISSUER}/.well-known/openid-configuration",
        "not asked: the host did not answer",
    )


@pytest.mark.parametrize(
    "issuer",
    [
        pytest.param("http://as.example", id="plain-http"),
        pytest.param("https://as.example?x=1", id="query"),
        pytest.param("ftp://as.example", id="ftp"),
    ],
)
async def test_bad_issuer_is_refused_before_any_request(issuer: str) -> None:
    """The issuer must be https without query or fragment (RFC 8414 §2)."""
    server = ScriptedServer()
    with pytest.raises(ol.UnsupportedServer, match="issuer"):
        await ol.authorize(issuer, transport=server.transport())
    assert not server.requests


# --- the browser ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("javascript:alert(1)", id="javascript"),
        pytest.param("file:///etc/passwd", id="file"),
        pytest.param("http://as.example/authorize", id="http-non-loopback"),
        pytest.param("https://as.example/a b", id="space"),
        pytest.param("https://user@as.example/", id="userinfo"),
        pytest.param("vscode://x/y", id="custom-scheme"),
    ],
)
async def test_browser_launcher_refuses_bad_urls(url: str) -> None:
    """Only https (or http to loopback) is handed to a launcher; the opener is never called."""
    called: list[str] = []
    with pytest.raises(UnsafeBrowserURL):
        await launch_browser(url, called.append)
    assert not called


@pytest.mark.parametrize(
    "url", ["https://as.example/authorize?x=1", "http://127.0.0.1:8/a", "http://[::1]:8/a"]
)
def test_browser_url_check_accepts_https_and_loopback(url: str) -> None:
    """https anywhere and http to a loopback address pass the check unchanged."""
    assert check_browser_url(url) == url


async def test_insecure_authorization_endpoint_is_never_opened() -> None:
    """An authorization_endpoint over plain http to a remote host is refused before launch."""
    server = ScriptedServer(authorization_endpoint="http://as.example/authorize")
    opened: list[str] = []
    with pytest.raises(ol.UnsupportedServer, match="https"):
        await _authorize(server, open_browser=opened.append)
    assert not opened


async def test_browser_that_does_not_open_without_show_url_raises() -> None:
    """A launcher reporting failure with nothing showing the URL raises BrowserUnavailable."""
    server = ScriptedServer()
    with pytest.raises(ol.BrowserUnavailable, match="show_url"):
        await _authorize(server, open_browser=lambda url: False)


# --- PKCE guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "query",
    [
        pytest.param("state=x", id="no-pkce"),
        pytest.param("code_challenge=abc&code_challenge_method=plain", id="plain"),
        pytest.param("code_challenge=wrong&code_challenge_method=S256", id="wrong-challenge"),
    ],
)
def test_pkce_guard_refuses_urls_without_s256(query: str) -> None:
    """A URL without the right S256 challenge for our verifier is never used."""
    with pytest.raises(ol.OAuthLoopbackError, match="PKCE"):
        _client.check_pkce(f"https://as.example/authorize?{query}", "v" * 48)


async def test_pkce_guard_stops_authlib_silently_dropping_pkce(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If authlib's URL builder lost the PKCE parameters, the login stops before the browser."""
    from authlib.oauth2.rfc6749.parameters import prepare_grant_uri as real

    def without_pkce(*args: Any, **kwargs: Any) -> Any:
        kwargs.pop("code_challenge", None)  # an authlib that ignored them
        kwargs.pop("code_challenge_method", None)
        return real(*args, **kwargs)

    monkeypatch.setattr(_client, "prepare_grant_uri", without_pkce)
    server = ScriptedServer()
    opened: list[str] = []
    with pytest.raises(ol.OAuthLoopbackError, match="PKCE"):
        await _authorize(server, open_browser=opened.append)
    assert not opened


# --- paste fallback -------------------------------------------------------------------------


async def test_pasted_address_completes_the_login() -> None:
    """paste=True: a rejected paste explains why and asks again; a good one wins."""
    server = ScriptedServer()
    prompts: list[str] = []

    async def read_line(prompt: str) -> str | None:
        prompts.append(prompt)
        if len(prompts) == 1:
            # The first prompt carries the URL (no show_url); "open" it on another machine.
            url = next(w for w in prompt.split() if w.startswith(f"{ISSUER}/authorize?"))
            server.authorization_params.append(dict(parse_qsl(urlsplit(url).query)))
            return url  # the wrong address: the authorization URL itself
        if len(prompts) == 2:
            return "   "
        return server.callback_url()

    token = await _authorize(server, paste=True, read_line=read_line, open_browser=None)
    assert token.access_token == "at-secret-value"
    assert server.token_forms[0]["code"] == "pasted-code"
    assert "Open this address in a browser" in prompts[0]
    assert "not accepted" in prompts[1]
    assert "/callback" in prompts[1]
    assert len(prompts) == 3


async def test_paste_rejects_a_wrong_state_and_keeps_waiting() -> None:
    """A pasted address for another login is refused with the reason; the next one works."""
    server = ScriptedServer()
    prompts: list[str] = []
    shown: list[str] = []

    def read_line(prompt: str) -> str | None:
        prompts.append(prompt)
        params = dict(parse_qsl(urlsplit(shown[0]).query))
        if len(prompts) == 1:
            server.authorization_params.append(params)
            return f"{params['redirect_uri']}?code=x&state=someone-else"
        return server.callback_url()

    token = await _authorize(
        server, paste=True, read_line=read_line, show_url=shown.append, open_browser=None
    )
    assert token.access_token == "at-secret-value"
    assert "Open this address" not in prompts[0]  # show_url showed it
    assert "not accepted" in prompts[1]


async def test_browser_callback_wins_over_a_silent_prompt() -> None:
    """paste=True with a working browser: the callback wins and the prompt is cancelled."""
    server = ScriptedServer()
    cancelled = anyio.Event()

    async def read_line(prompt: str) -> str | None:
        try:
            await anyio.sleep_forever()
        finally:
            cancelled.set()
        return None  # pragma: no cover

    async with anyio.create_task_group() as tg:

        def open_browser(url: str) -> bool:
            # Like a real launcher: start the browser and return; it loads the page meanwhile.
            tg.start_soon(server.browser(), url)
            return True

        token = await _authorize(server, paste=True, read_line=read_line, open_browser=open_browser)
    assert token.access_token == "at-secret-value"
    assert cancelled.is_set()


async def test_pasted_denial_raises_authorization_denied() -> None:
    """A pasted error=access_denied address raises AuthorizationDenied, not a group."""
    server = ScriptedServer()
    shown: list[str] = []

    def read_line(prompt: str) -> str | None:
        params = dict(parse_qsl(urlsplit(shown[0]).query))
        query = urlencode({"error": "access_denied", "state": params["state"], "iss": ISSUER})
        return f"{params['redirect_uri']}?{query}"

    with pytest.raises(ol.AuthorizationDenied):
        await _authorize(
            server, paste=True, read_line=read_line, show_url=shown.append, open_browser=None
        )


async def test_paste_input_ending_leaves_the_browser_path_open() -> None:
    """EOF on the paste input stops prompting; the real callback still completes the login."""
    server = ScriptedServer()
    prompts: list[str] = []

    def read_line(prompt: str) -> str | None:
        prompts.append(prompt)
        return None

    token = await _authorize(server, paste=True, read_line=read_line)
    assert token.access_token == "at-secret-value"
    assert len(prompts) <= 1


# --- Token and errors -----------------------------------------------------------------------


def test_token_repr_redacts_secrets() -> None:
    """repr shows token_type, expires_in and scope, never tokens or unknown fields."""
    token = ol.Token(
        {
            "access_token": "AT",
            "token_type": "Bearer",
            "expires_in": "60",
            "refresh_token": "RT",
            "id_token": "ID",
            "scope": "a b",
        }
    )
    text = repr(token)
    assert "AT" not in text.replace("access_token", "")
    assert "RT" not in text
    assert "'ID'" not in text
    assert "'Bearer'" in text
    assert "'a b'" in text
    assert token.expires_in == 60
    assert token.expires_at == pytest.approx(token.received_at + 60)
    assert dict(token)["id_token"] == "ID"
    with pytest.raises(TypeError):
        token["access_token"] = "x"  # type: ignore[index]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"token_type": "Bearer"}, id="no-access-token"),
        pytest.param({"access_token": "", "token_type": "Bearer"}, id="empty-access-token"),
        pytest.param({"access_token": "x"}, id="no-token-type"),
    ],
)
def test_token_requires_access_token_and_type(data: dict[str, object]) -> None:
    """RFC 6749 §5.1 requires access_token and token_type."""
    with pytest.raises(ValueError, match="RFC 6749"):
        ol.Token(data)


def _round_trip(error: BaseException) -> Any:
    return pickle.loads(pickle.dumps(error))  # noqa: S301  (our own bytes)


def test_new_errors_pickle_with_their_fields() -> None:
    """TokenError, RegistrationError and DiscoveryError survive pickling (process pools)."""
    token_error = _round_trip(ol.TokenError("invalid_grant", "d", "u", status_code=400))
    assert (token_error.error, token_error.description, token_error.uri) == (
        "invalid_grant",
        "d",
        "u",
    )
    assert token_error.status_code == 400
    assert str(token_error) == str(ol.TokenError("invalid_grant", "d", "u", status_code=400))
    reg = _round_trip(ol.RegistrationError("m", error="e", status_code=400))
    assert (str(reg), reg.error, reg.status_code) == ("m", "e", 400)
    disc = _round_trip(ol.DiscoveryError("https://h", (("https://h/x", "HTTP 404"),)))
    assert disc.tried == (("https://h/x", "HTTP 404"),)


def test_authorize_names_are_exported_lazily() -> None:
    """The login names are in __all__ and resolve to the objects of the login modules."""
    homes = {"authorize": authorize_module, "Token": _token_module}
    for name in ("authorize", "Token", "TokenError", "DiscoveryError", "UnsupportedServer"):
        assert name in ol.__all__
        assert getattr(ol, name) is getattr(homes.get(name, _errors), name)
    assert issubclass(ol.TokenError, ol.AuthorizationError)
    with pytest.raises(AttributeError):
        _ = ol.no_such_name


# --- end to end against the embedded authorization server ----------------------------------


async def _login_embedded(server: Any, **kwargs: Any) -> ol.Token:
    from oauth_loopback.testing import follow_redirects

    kwargs.setdefault("open_browser", follow_redirects)
    kwargs.setdefault("timeout", 20)
    return await ol.authorize(server.issuer, **kwargs)


async def test_embedded_server_login_with_dynamic_registration() -> None:
    """A full login against the embedded server registers a client and gets its token."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(exact_redirect_match=True) as server:
        token = await _login_embedded(server, resource="https://mcp.example/mcp")
        (issued,) = server.issued_tokens
        (client,) = server.clients.values()
    assert token.access_token == issued.access_token
    assert token.refresh_token == issued.refresh_token
    assert issued.grant_type == "authorization_code"
    assert issued.resource == ("https://mcp.example/mcp",)
    assert client.dynamic
    assert client.token_endpoint_auth_method == "none"
    # exact_redirect_match: only the live redirect URI (with its real port) could work.
    assert client.redirect_uris[0].startswith("http://127.0.0.1:")


async def test_embedded_server_login_with_pre_registered_client() -> None:
    """A pre-registered public client logs in on any loopback port (RFC 8252 §7.3)."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(registration=False) as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        token = await _login_embedded(server, client_id=client_id)
        (issued,) = server.issued_tokens
    assert token.access_token == issued.access_token
    assert issued.client_id == client_id


async def test_embedded_server_with_issuer_path() -> None:
    """An issuer with a path is discovered at the path-aware RFC 8414 URL."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(path_prefix="/tenant1") as server:
        assert server.issuer.endswith("/tenant1")
        steps: list[tuple[str, str]] = []
        await _login_embedded(server, on_step=lambda n, d: steps.append((n, d)))
    discovery = dict(steps)["discovery"]
    assert "/.well-known/oauth-authorization-server/tenant1" in discovery


async def test_embedded_server_denial() -> None:
    """deny=True: the login raises AuthorizationDenied and no token is issued."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(deny=True) as server:
        with pytest.raises(ol.AuthorizationDenied):
            await _login_embedded(server)
        assert not server.issued_tokens


async def test_embedded_server_wrong_iss() -> None:
    """wrong_iss=True: RFC 9207 mix-up defence raises IssuerMismatch."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(wrong_iss=True) as server:
        with pytest.raises(ol.IssuerMismatch) as caught:
            await _login_embedded(server)
        assert caught.value.expected == server.issuer
        assert not server.issued_tokens


async def test_embedded_server_token_error() -> None:
    """token_error='invalid_grant': TokenError carries the RFC 6749 §5.2 error and status."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(token_error="invalid_grant") as server:
        with pytest.raises(ol.TokenError) as caught:
            await _login_embedded(server)
    assert caught.value.error == "invalid_grant"
    assert caught.value.status_code == 400


async def test_embedded_server_discovery_failure_names_the_urls() -> None:
    """A wrong issuer path: every well-known URL is named with its HTTP status."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer() as server:
        issuer = f"{server.issuer}/nope"
        with pytest.raises(ol.DiscoveryError) as caught:
            await ol.authorize(issuer, open_browser=lambda url: True)
    message = str(caught.value)
    for url in _metadata.discovery_urls(issuer):
        assert url in message
    assert f"{server.issuer}/.well-known/oauth-authorization-server/nope (HTTP 404)" in message


async def test_embedded_server_without_registration_needs_client_id() -> None:
    """No registration endpoint and no client_id: a clear UnsupportedServer."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(registration=False) as server:
        with pytest.raises(ol.UnsupportedServer, match="client_id"):
            await _login_embedded(server)


async def test_embedded_server_paste_fallback() -> None:
    """No browser reaches the receiver: the user pastes the redirect address and logs in."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer() as server:

        async def read_line(prompt: str) -> str | None:
            # "Another machine's browser": load the URL from the prompt, stop at the redirect.
            url = next(w for w in prompt.split() if w.startswith(server.issuer))
            async with httpx2.AsyncClient(trust_env=False) as browser:
                reply = await browser.get(url)
            assert reply.status_code in (302, 303)
            return str(reply.headers["location"])

        token = await ol.authorize(server.issuer, paste=True, read_line=read_line, timeout=20)
        (issued,) = server.issued_tokens
    assert token.access_token == issued.access_token


async def test_given_metadata_skips_discovery_for_servers_without_it() -> None:
    """metadata= logs in to a server that publishes no discovery document (no well-known GET)."""
    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer(registration=False) as server:
        client_id = server.register_client(["http://127.0.0.1/callback"])
        given = {
            "authorization_endpoint": server.authorization_endpoint,
            "token_endpoint": server.token_endpoint,
        }
        steps: list[tuple[str, str]] = []
        token = await _login_embedded(
            server, client_id=client_id, metadata=given, on_step=lambda n, d: steps.append((n, d))
        )
        (issued,) = server.issued_tokens
        asked = [path for _method, path in server.requests]
    assert token.access_token == issued.access_token
    assert not any(path.startswith("/.well-known/") for path in asked)
    assert dict(steps)["discovery"] == "metadata from the metadata= argument"


async def test_given_metadata_must_name_the_same_issuer() -> None:
    """metadata= with another issuer is refused before anything is bound or sent."""
    with pytest.raises(ol.UnsupportedServer, match="must be identical"):
        await ol.authorize(
            "https://as.example",
            client_id="c",
            metadata={
                "issuer": "https://other.example",
                "authorization_endpoint": "https://as.example/authorize",
                "token_endpoint": "https://as.example/token",
            },
        )


async def test_given_metadata_without_token_endpoint_is_refused() -> None:
    """metadata= missing token_endpoint says which field is missing."""
    with pytest.raises(ol.UnsupportedServer, match="token_endpoint"):
        await ol.authorize(
            "https://as.example",
            client_id="c",
            metadata={"authorization_endpoint": "https://as.example/authorize"},
        )


# --- what runs before the browser -----------------------------------------------------------

_BEFORE_BROWSER = """
import json, sys
import anyio
import oauth_loopback as ol

HEAVY = ("authlib.integrations", "joserfc", "cryptography")

def opener(url):
    loaded = sorted(m for m in sys.modules if m.startswith(HEAVY))
    print(json.dumps(loaded))
    return False  # then BrowserUnavailable: the child ends without a login

async def main():
    try:
        await ol.authorize(sys.argv[1], scope="read", open_browser=opener, **json.loads(sys.argv[2]))
    except ol.BrowserUnavailable:
        print("no browser")

anyio.run(main)
"""


@pytest.mark.parametrize("warm", [False, True], ids=["registers", "client-id"])
async def test_browser_opens_before_the_token_client_and_jose_load(warm: bool) -> None:
    """The browser is not kept waiting for authlib's token client (its OpenID and JOSE
    layers, tens of milliseconds of imports): they load while the user is in the browser.
    A fresh process, since this test process has them loaded already."""
    import sys

    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer() as server:
        options: dict[str, object] = {}
        if warm:
            options["client_id"] = server.register_client(["http://127.0.0.1/callback"])
            options["metadata"] = dict(server.metadata)
        result = await anyio.run_process(
            [sys.executable, "-c", _BEFORE_BROWSER, server.issuer, json.dumps(options)],
            check=False,
        )
    assert result.returncode == 0, result.stderr.decode()
    loaded, outcome = result.stdout.decode().splitlines()
    assert json.loads(loaded) == []
    assert outcome == "no browser"


_IMPORT_THREADS = """
import json, sys, threading

seen = {}

def audit(event, args):
    # httpcore2's first submodule: imported by an import statement wherever httpcore2 runs.
    if event == "import" and args[0] in ("httpcore2._api", "authlib.integrations.httpx_client"):
        seen.setdefault(args[0], threading.current_thread() is threading.main_thread())

sys.addaudithook(audit)
import anyio
import oauth_loopback as ol

async def main():
    token = await ol.authorize(sys.argv[1], scope="read", open_browser=follow)
    print(json.dumps({"token": bool(token.access_token), "on_loop_thread": seen}))

from oauth_loopback.testing import follow_redirects as follow
anyio.run(main)
"""


async def test_the_first_login_imports_its_http_stack_off_the_event_loop() -> None:
    """The first login of a process imports httpx2's transport (httpcore2, and trio where it
    is installed) and authlib's token client in worker threads: tens of milliseconds during
    which a long-running program's other tasks would otherwise not run. A fresh process (the
    audit hook sees which thread each import runs on; the event loop runs on the main one)."""
    import sys

    from oauth_loopback.testing import AuthorizationServer

    async with AuthorizationServer() as server:
        result = await anyio.run_process(
            [sys.executable, "-c", _IMPORT_THREADS, server.issuer], check=False
        )
    assert result.returncode == 0, result.stderr.decode()
    report = json.loads(result.stdout.decode())
    assert report["token"] is True
    assert report["on_loop_thread"] == {
        "httpcore2._api": False,
        "authlib.integrations.httpx_client": False,
    }
