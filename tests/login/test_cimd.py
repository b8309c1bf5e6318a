"""Client ID metadata documents: logins with an URL client_id, the CLI helper, the checker.

The documents are served on 127.0.0.1 by a small host in the test (the embedded server, like
this library's client for a loopback test issuer, accepts plain http document URLs on loopback
only; real ones are https).
"""

from __future__ import annotations

import json
from pathlib import Path

import anyio.to_thread
import httpx2
import pytest

import oauth_loopback as ol
from oauth_loopback import _cli
from oauth_loopback._login._cimd import (
    check_metadata_document,
    is_metadata_document_url,
    metadata_document,
)
from oauth_loopback.testing import AuthorizationServer
from tests.login._support import (
    Browser,
    DocumentHost,
    count,
    document_host,
    dynamic_clients,
    expire,
    grants,
    no_browser,
)

pytestmark = pytest.mark.anyio

PUBLISHED = "https://app.example/oauth/client.json"


def _document(host: DocumentHost, path: str = "/client.json") -> str:
    """Serve the document ``cimd write`` makes, at its own (loopback) URL; return the URL."""
    url = host.url(path)
    document = metadata_document(PUBLISHED, client_name="Test CLI")
    return host.serve(path, {**document, "client_id": url})


async def test_logins_on_two_ports_register_nothing() -> None:
    """Two logins on two ephemeral ports with a document client_id: no registration at all,
    the document fetched for each, the portless redirect URIs matched on any port."""
    async with (
        document_host() as host,
        AuthorizationServer(client_id_metadata_documents=True) as server,
    ):
        url = _document(host)
        browser = Browser()
        first = await ol.authorize(server.issuer, client_id=url, open_browser=browser)
        second = await ol.authorize(server.issuer, client_id=url, open_browser=browser)
        redirects = {o.split("redirect_uri=")[1].split("&")[0] for o in browser.opened}
        assert len(redirects) == 2  # two different ports
        assert count(server, "POST", "/register") == 0
        assert dynamic_clients(server) == []
        assert server.clients[url].metadata_document
        # Each login asks the authorization endpoint once before the browser (the stale-client
        # preflight), and the server fetches the document for each of those requests.
        assert server.metadata_document_fetches == [url] * 4
        assert host.fetched == ["/client.json"] * 4
        for token in (first, second):
            assert token.client is not None
            assert token.client.obtained == "metadata_document"
            assert token.client.client_id == url
        assert [t.client_id for t in server.issued_tokens] == [url, url]


async def test_get_token_with_a_document_restarts_and_logs_in_without_registering(
    tmp_path: Path,
) -> None:
    """Restart with an expired token: refreshed, no browser; revoked: one login, and still
    nothing registered."""
    async with (
        document_host() as host,
        AuthorizationServer(client_id_metadata_documents=True) as server,
    ):
        url = _document(host)
        key = ol.LoginKey(server.issuer)
        await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), client_id=url, open_browser=Browser()
        )
        await expire(ol.FileTokenStore(tmp_path), key)
        await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), client_id=url, open_browser=no_browser
        )
        refresh_token = server.issued_tokens[-1].refresh_token
        assert refresh_token is not None
        server.revoke_token(refresh_token)
        await expire(ol.FileTokenStore(tmp_path), key)
        browser = Browser()
        await ol.get_token(
            server.issuer, store=ol.FileTokenStore(tmp_path), client_id=url, open_browser=browser
        )
        assert browser.count == 1
        assert grants(server) == ["authorization_code", "refresh_token", "authorization_code"]
        assert count(server, "POST", "/register") == 0


async def test_a_server_without_documents_falls_back_to_registration_once(
    tmp_path: Path,
) -> None:
    """The MCP order: no client_id_metadata_document_supported -> dynamic registration, and
    that registration is reused by later logins with the same client_id=."""
    async with document_host() as host, AuthorizationServer() as server:
        url = _document(host)
        key = ol.LoginKey(server.issuer)
        store = ol.FileTokenStore(tmp_path)
        token = await ol.get_token(
            server.issuer, store=store, client_id=url, open_browser=Browser()
        )
        assert token.client is not None
        assert token.client.obtained == "dynamic"
        login = await store.load(key)
        assert login is not None
        await store.save(type(login)(issuer=login.issuer, client=login.client))  # tokens gone
        await ol.get_token(server.issuer, store=store, client_id=url, open_browser=Browser())
        assert len(dynamic_clients(server)) == 1
        assert host.fetched == []


async def test_the_server_refuses_a_document_naming_another_client_id() -> None:
    """A document whose client_id is not its URL gets an error page, never a redirect."""
    async with (
        document_host() as host,
        AuthorizationServer(client_id_metadata_documents=True) as server,
    ):
        url = host.serve("/client.json", metadata_document(PUBLISHED, client_name="X"))
        params = {
            "response_type": "code",
            "client_id": url,
            "redirect_uri": "http://127.0.0.1:5000/callback",
            "state": "s",
            "code_challenge": "x" * 43,
            "code_challenge_method": "S256",
        }
        async with httpx2.AsyncClient(trust_env=False) as http:
            reply = await http.get(server.authorization_endpoint, params=params)
        assert reply.status_code == 400
        assert "must be the document&#x27;s URL exactly" in reply.text
        assert url not in server.clients


@pytest.mark.parametrize(
    ("client_id", "issuer", "expected"),
    [
        pytest.param(PUBLISHED, None, True, id="https-with-path"),
        pytest.param("https://app.example", None, False, id="no-path"),
        pytest.param("https://app.example/", None, False, id="root-path"),
        pytest.param("https://app.example/c.json#frag", None, False, id="fragment"),
        pytest.param("https://u@app.example/c.json", None, False, id="userinfo"),
        pytest.param("https://app.example/a/../c.json", None, False, id="dot-segment"),
        pytest.param("my-client", None, False, id="plain-client-id"),
        pytest.param("http://127.0.0.1:9/c.json", None, False, id="loopback-http-real-issuer"),
        pytest.param(
            "http://127.0.0.1:9/c.json", "http://127.0.0.1:8/", True, id="loopback-test-issuer"
        ),
        pytest.param("http://app.example/c.json", "http://127.0.0.1:8", False, id="remote-http"),
    ],
)
def test_which_client_ids_are_document_urls(
    client_id: str, issuer: str | None, expected: bool
) -> None:
    """https URLs with a path are documents; plain http only on loopback with a test issuer."""
    assert is_metadata_document_url(client_id, issuer=issuer) is expected


def test_the_written_document_is_a_public_native_client_with_portless_loopback_uris() -> None:
    """What `cimd write` produces checks clean and has the fields servers look for."""
    document = metadata_document(PUBLISHED, client_name="Acme", scope="read")
    assert document["redirect_uris"] == ["http://127.0.0.1/callback", "http://[::1]/callback"]
    assert document["application_type"] == "native"
    assert document["token_endpoint_auth_method"] == "none"
    assert document["grant_types"] == ["authorization_code", "refresh_token"]
    assert check_metadata_document(document, url=PUBLISHED, redirect_path="/callback") == []
    with pytest.raises(ValueError, match="https"):
        metadata_document("http://app.example/c.json", client_name="Acme")


@pytest.mark.parametrize(
    ("change", "level", "field"),
    [
        pytest.param(
            {"client_id": "https://other.example/c.json"}, "error", "client_id", id="moved"
        ),
        pytest.param({"client_secret": "s"}, "error", "client_secret", id="secret"),
        pytest.param(
            {"token_endpoint_auth_method": "client_secret_basic"},
            "error",
            "token_endpoint_auth_method",
            id="secret-method",
        ),
        pytest.param(
            {"redirect_uris": ["https://app.example/cb"]},
            "error",
            "redirect_uris",
            id="not-loopback",
        ),
        pytest.param(
            {"redirect_uris": ["http://127.0.0.1:8080/callback"]},
            "warning",
            "redirect_uris",
            id="pinned-port",
        ),
        pytest.param(
            {"grant_types": ["authorization_code"]}, "warning", "grant_types", id="no-refresh"
        ),
        pytest.param({"application_type": "web"}, "warning", "application_type", id="web"),
    ],
)
def test_the_checker_names_the_field_and_the_problem(
    change: dict[str, object], level: str, field: str
) -> None:
    """Each defect is reported once, at the right level, naming its field."""
    document = {**metadata_document(PUBLISHED, client_name="Acme"), **change}
    findings = check_metadata_document(document, url=PUBLISHED)
    assert [(f.level, f.field) for f in findings] == [(level, field)]


def test_cli_writes_and_checks_a_document(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`cimd write --output` then `cimd check` exits 0; a damaged copy exits 1 with its errors."""
    out = tmp_path / "client.json"
    assert _cli.main(["cimd", "write", PUBLISHED, "--name", "Acme CLI", "--output", str(out)]) == 0
    assert json.loads(out.read_text())["client_name"] == "Acme CLI"
    assert _cli.main(["cimd", "check", str(out), "--client-id", PUBLISHED]) == 0
    assert "ok" in capsys.readouterr().out
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({**json.loads(out.read_text()), "client_secret": "x"}))
    assert _cli.main(["cimd", "check", str(bad)]) == 1
    assert "error: client_secret must not be present" in capsys.readouterr().out
    assert _cli.main(["cimd", "write", "http://app.example/c.json", "--name", "A"]) == 2
    assert "https" in capsys.readouterr().err
    assert _cli.main(["cimd", "check", str(tmp_path / "missing.json")]) == 2
    assert _cli.main(["cimd", "check", "http://app.example/c.json"]) == 2
    assert "only ever served over https" in capsys.readouterr().err


async def test_cli_checks_a_document_it_fetches(capsys: pytest.CaptureFixture[str]) -> None:
    """`cimd check URL` fetches the document (loopback http here) and checks it."""
    async with document_host() as host:
        url = host.serve("/client.json", metadata_document(PUBLISHED, client_name="Acme"))
        argv = ["cimd", "check", url, "--client-id", PUBLISHED, "--path", "/callback"]
        assert await anyio.to_thread.run_sync(_cli.main, argv) == 0
        assert await anyio.to_thread.run_sync(_cli.main, ["cimd", "check", host.url("/none")]) == 2
    assert host.fetched == ["/client.json", "/none"]
    assert "HTTP 404" in capsys.readouterr().err
