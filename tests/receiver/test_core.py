"""The sans-I/O core: routing, the state registry and the pages, with no sockets and no loop."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import oauth_loopback as ol
from oauth_loopback._receiver import _pages
from oauth_loopback._receiver import _registry as registry_module
from oauth_loopback._receiver._pages import page_for, render_page
from oauth_loopback._receiver._registry import StateRegistry
from oauth_loopback._receiver._routing import allowed_host_headers, route


@dataclass(eq=False)
class FakeWaiter:
    issuer: str | None = None
    require_iss: bool = True


HOSTS = allowed_host_headers("127.0.0.1", 5000)


def _route(
    method: bytes = b"GET", target: bytes = b"/callback?x=1", host: bytes | None = b"127.0.0.1:5000"
) -> str:
    return route(method, target, host, path="/callback", allowed_hosts=HOSTS, app_name="App")


@pytest.mark.parametrize(
    ("method", "target", "host", "status"),
    [
        pytest.param(b"GET", b"/favicon.ico", b"127.0.0.1:5000", 404, id="other-path"),
        pytest.param(b"POST", b"/favicon.ico", b"127.0.0.1:5000", 404, id="other-path-any-method"),
        pytest.param(b"GET", b"/callback/", b"127.0.0.1:5000", 404, id="trailing-slash"),
        pytest.param(b"POST", b"/callback?code=a&state=b", b"127.0.0.1:5000", 405, id="post"),
        pytest.param(b"HEAD", b"/callback", b"127.0.0.1:5000", 405, id="head"),
        pytest.param(b"GET", b"/callback?code=a", b"evil.example:5000", 421, id="rebinding-host"),
        pytest.param(b"GET", b"/callback?code=a", b"127.0.0.1:5001", 421, id="other-port"),
        pytest.param(b"GET", b"/callback?code=a", None, 421, id="no-host"),
        pytest.param(
            b"GET", "/callback?\u00e9".encode(), b"127.0.0.1:5000", 400, id="non-ascii-target"
        ),
        pytest.param(b"POST", b"/callback", b"evil.example", 405, id="method-before-host"),
    ],
)
def test_route_refusals_follow_the_documented_order(
    method: bytes, target: bytes, host: bytes | None, status: int
) -> None:
    """Wrong path is 404 whatever the method, then 405 for non-GET, then 421 for a foreign Host."""
    with pytest.raises(ol.CallbackRejected) as info:
        _route(method, target, host)
    assert info.value.status_hint == status


@pytest.mark.parametrize(
    ("target", "host", "query"),
    [
        pytest.param(
            b"/callback?code=a&state=b", b"127.0.0.1:5000", "code=a&state=b", id="origin-form"
        ),
        pytest.param(b"/callback", b"localhost:5000", "", id="localhost-host"),
        pytest.param(b"/callback?x=1", b"LOCALHOST:5000", "x=1", id="host-case-insensitive"),
        pytest.param(
            b"http://127.0.0.1:5000/callback?x=1", b"127.0.0.1:5000", "x=1", id="absolute-form"
        ),
    ],
)
def test_route_returns_the_query(target: bytes, host: bytes, query: str) -> None:
    """A GET to the callback path with this receiver's Host yields its query string."""
    assert _route(b"GET", target, host) == query


def test_allowed_hosts_cover_only_this_receivers_names() -> None:
    """IPv4, IPv6 and localhost receivers accept their own loopback names on their port."""
    assert allowed_host_headers("127.0.0.1", 80) >= {b"127.0.0.1", b"127.0.0.1:80"}
    v6 = allowed_host_headers("::1", 5000)
    assert b"[::1]:5000" in v6
    assert b"127.0.0.1:5000" not in v6
    assert b"[::1]:5000" in allowed_host_headers("localhost", 5000)


def _registry(
    *states: str, issuer: str | None = None
) -> tuple[StateRegistry[FakeWaiter], dict[str, FakeWaiter]]:
    registry: StateRegistry[FakeWaiter] = StateRegistry()
    waiters = {}
    for state in states:
        waiters[state] = FakeWaiter(issuer)
        registry.add(state, waiters[state])
    return registry, waiters


@pytest.mark.parametrize(
    ("query", "title"),
    [
        pytest.param("code=c", "Not a sign-in response", id="missing-state"),
        pytest.param("code=c&state=", "Not a sign-in response", id="empty-state"),
        pytest.param("code=c&state=s1&state=s1", "Ambiguous response", id="repeated-state"),
        pytest.param("code=c&state=nope", "Unknown sign-in", id="unknown-state"),
        pytest.param("state=s1", "Incomplete response", id="neither-code-nor-error"),
        pytest.param("code=&state=s1", "Incomplete response", id="empty-code"),
        pytest.param("code=c&error=x&state=s1", "Incomplete response", id="both-code-and-error"),
        pytest.param("code=c&code=d&state=s1", "Ambiguous response", id="repeated-code"),
        pytest.param("code=%ff&state=s1", "Unreadable response", id="non-utf8"),
        pytest.param(
            "&".join(f"k{i}=v" for i in range(100)) + "&state=s1",
            "Unreadable response",
            id="too-many-fields",
        ),
    ],
)
def test_bad_queries_are_rejected_and_consume_nothing(query: str, title: str) -> None:
    """Bad callbacks get a 4xx explanation and every login stays pending."""
    registry, _ = _registry("s1", "s2")
    with pytest.raises(ol.CallbackRejected) as info:
        registry.match(query, "App")
    assert 400 <= info.value.status_hint < 500
    assert info.value.title == title
    assert "s1" in registry
    assert "s2" in registry
    assert len(registry) == 2


def test_code_wakes_exactly_the_matching_login() -> None:
    """A code with a known state goes to that state's waiter, and the state is single-use."""
    registry, waiters = _registry("s1", "s2")
    waiter, outcome = registry.match("code=the-code&state=s2&scope=a+b", "App")
    assert waiter is waiters["s2"]
    assert isinstance(outcome, ol.AuthorizationResponse)
    assert (outcome.code, outcome.state, outcome.iss) == ("the-code", "s2", None)
    assert outcome.params["scope"] == "a b"
    assert "s2" not in registry
    assert "s1" in registry
    with pytest.raises(ol.CallbackRejected) as info:
        registry.match("code=again&state=s2", "App")
    assert info.value.title == "Already received"


@pytest.mark.parametrize(
    ("query", "cls", "error"),
    [
        pytest.param(
            "error=access_denied&state=s1", ol.AuthorizationDenied, "access_denied", id="denied"
        ),
        pytest.param(
            "error=server_error&state=s1", ol.AuthorizationError, "server_error", id="server-error"
        ),
        pytest.param(
            "error=invalid_scope&state=s1",
            ol.AuthorizationError,
            "invalid_scope",
            id="invalid-scope",
        ),
    ],
)
def test_error_responses_become_typed_errors(
    query: str, cls: type[ol.AuthorizationError], error: str
) -> None:
    """error=... is delivered as AuthorizationError (access_denied as AuthorizationDenied)."""
    registry, waiters = _registry("s1")
    waiter, outcome = registry.match(
        query
        + "&error_description=No+thanks&error_uri=https%3A%2F%2Fas.example%2Fe&iss=https%3A%2F%2Fas.example",
        "App",
    )
    assert waiter is waiters["s1"]
    assert type(outcome) is cls
    assert isinstance(outcome, ol.AuthorizationError)
    assert outcome.error == error
    assert outcome.description == "No thanks"
    assert outcome.uri == "https://as.example/e"
    assert outcome.iss == "https://as.example"
    assert outcome.params["state"] == "s1"
    assert "s1" not in registry


@pytest.mark.parametrize(
    ("query", "ok"),
    [
        pytest.param("code=c&state=s1&iss=https%3A%2F%2Fas.example", True, id="matching-iss"),
        pytest.param("code=c&state=s1", False, id="missing-iss"),
        pytest.param("code=c&state=s1&iss=https%3A%2F%2Fevil.example", False, id="other-iss"),
        pytest.param(
            "code=c&state=s1&iss=https%3A%2F%2Fas.example%2F", False, id="trailing-slash-iss"
        ),
        pytest.param(
            "error=access_denied&state=s1&iss=https%3A%2F%2Fevil.example",
            False,
            id="error-wrong-iss",
        ),
    ],
)
def test_expected_issuer_is_compared_exactly(query: str, ok: bool) -> None:
    """RFC 9207: with an expected issuer, a missing or different iss yields IssuerMismatch."""
    registry, _ = _registry("s1", issuer="https://as.example")
    _, outcome = registry.match(query, "App")
    if ok:
        assert isinstance(outcome, ol.AuthorizationResponse)
        assert outcome.iss == "https://as.example"
    else:
        assert isinstance(outcome, ol.IssuerMismatch)
        assert outcome.expected == "https://as.example"
    assert "s1" not in registry


def test_add_refuses_a_state_already_pending() -> None:
    """Two logins cannot share a state."""
    registry, _ = _registry("s1")
    with pytest.raises(ValueError, match="already pending"):
        registry.add("s1", FakeWaiter())


@pytest.mark.parametrize(
    ("why", "title"),
    [
        pytest.param("timeout", "Sign-in expired", id="timed-out"),
        pytest.param("cancelled", "Sign-in abandoned", id="cancelled"),
    ],
)
def test_forgotten_states_get_a_page_that_says_why(why: str, title: str) -> None:
    """A late callback for a timed-out or cancelled login is refused with the reason."""
    registry, waiters = _registry("s1")
    registry.forget("s1", waiters["s1"], why)
    with pytest.raises(ol.CallbackRejected) as info:
        registry.match("code=c&state=s1", "App")
    assert info.value.title == title


def test_forget_ignores_a_waiter_that_no_longer_owns_the_state() -> None:
    """A stale forget() never removes a newer login that reused the state."""
    registry, waiters = _registry("s1")
    registry.forget("s1", FakeWaiter(), "cancelled")
    assert "s1" in registry


def test_finished_memory_is_bounded() -> None:
    """Remembering finished states cannot grow without bound."""
    registry: StateRegistry[FakeWaiter] = StateRegistry()
    for i in range(registry_module._FINISHED_MEMORY + 50):
        waiter = FakeWaiter()
        registry.add(f"s{i}", waiter)
        registry.forget(f"s{i}", waiter, "cancelled")
    assert len(registry._finished) == registry_module._FINISHED_MEMORY


def test_pages_escape_what_they_reflect() -> None:
    """Reflected text (an error description from the URL) is HTML-escaped."""
    evil = "<script>alert(1)</script>"
    page = render_page(evil, evil, ok=False, detail=evil).decode()
    assert "<script>" not in page
    assert "&lt;script&gt;" in page
    error = ol.AuthorizationError("x<y>", evil)
    status, body = page_for(error, "<b>App</b>")
    assert status == 400
    assert b"<script>" not in body
    assert b"<b>App</b>" not in body


def test_success_page_names_the_app() -> None:
    """The success page tells the person they are signed in and where to go back to."""
    response = ol.AuthorizationResponse(code="c", state="s", iss=None, params={})
    status, body = page_for(response, "Acme CLI")
    assert status == 200
    assert "Signed in \N{EM DASH} you can close this tab and return to Acme CLI." in body.decode()


def test_pages_are_served_with_protective_headers() -> None:
    """no-store, no-referrer and a CSP that allows no script."""
    headers = dict(_pages.PAGE_HEADERS)
    assert headers[b"Cache-Control"] == b"no-store"
    assert headers[b"Referrer-Policy"] == b"no-referrer"
    csp = headers[b"Content-Security-Policy"]
    assert b"default-src 'none'" in csp
    assert b"script-src" not in csp  # falls back to default-src 'none'
    assert b"frame-ancestors 'none'" in csp


def test_response_repr_hides_code_and_state() -> None:
    """Reprs end up in logs: the code and state never appear in them."""
    response = ol.AuthorizationResponse(code="SECRETCODE", state="SECRETSTATE", iss=None, params={})
    assert "SECRET" not in repr(response)


@settings(max_examples=300, deadline=None)
@given(query=st.text(max_size=200) | st.binary(max_size=200).map(lambda b: b.decode("latin-1")))
def test_match_returns_or_rejects_never_anything_else(query: str) -> None:
    """Whatever the query, match() returns an outcome or raises CallbackRejected (h11's rule)."""
    registry, waiters = _registry("s1", "s2")
    try:
        waiter, outcome = registry.match(query, "App")
    except ol.CallbackRejected as exc:
        status = exc.status_hint
        assert 400 <= status < 500
        assert len(registry) == 2
    else:
        assert waiter in waiters.values()
        assert isinstance(outcome, (ol.AuthorizationResponse, ol.OAuthLoopbackError))
        assert len(registry) == 1


@settings(max_examples=200, deadline=None)
@given(
    method=st.binary(max_size=10),
    target=st.binary(max_size=100),
    host=st.none() | st.binary(max_size=30),
)
def test_route_returns_or_rejects_never_anything_else(
    method: bytes, target: bytes, host: bytes | None
) -> None:
    """route() returns a query string or raises CallbackRejected, whatever the bytes."""
    try:
        query = _route(method, target, host)
    except ol.CallbackRejected as exc:
        status = exc.status_hint
        assert status in (400, 404, 405, 421)
    else:
        assert isinstance(query, str)


def test_core_imports_no_io_or_authlib() -> None:
    """The layering rule: importing the core pulls in neither anyio, socket, trio nor authlib."""
    code = (
        "import sys; import oauth_loopback._receiver._registry, oauth_loopback._receiver._routing, oauth_loopback._receiver._pages, oauth_loopback._config, oauth_loopback._errors; "
        "bad = [m for m in ('anyio', 'socket', 'trio', 'asyncio', 'authlib', 'httpx2') if m in sys.modules]; "
        "print(','.join(bad))"
    )
    # Import the core modules without the package __init__ (which loads the shell).
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import importlib.util, sys\n"
            "spec = importlib.util.find_spec('oauth_loopback')\n"
            "import types; pkg = types.ModuleType('oauth_loopback'); pkg.__path__ = list(spec.submodule_search_locations)\n"
            "sys.modules['oauth_loopback'] = pkg\n" + code.replace("; ", "\n"),
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == ""


def test_package_import_does_not_load_the_login_flow_or_trio() -> None:
    """import oauth_loopback stays lean: no authlib, httpx2 or trio until they are used."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, oauth_loopback; "
            "print(','.join(m for m in ('authlib', 'httpx2', 'trio', 'mcp') if m in sys.modules))",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert out.stdout.strip() == ""


def test_csp_style_hash_matches_the_inline_style() -> None:
    """The precomputed CSP hash is the sha256 of the page's inline style (else browsers drop it)."""
    import base64
    import hashlib

    expected = base64.b64encode(hashlib.sha256(_pages._STYLE.encode()).digest()).decode()
    assert expected == _pages._STYLE_HASH
    assert f"'sha256-{expected}'".encode() in _pages.CONTENT_SECURITY_POLICY
