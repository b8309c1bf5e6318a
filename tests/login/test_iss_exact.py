"""RFC 9207 ``iss`` and RFC 8414 ``issuer`` are compared byte for byte, wherever they are checked.

No case folding, no default port, no trailing-slash or percent-encoding normalisation: a
server whose identifier differs in any byte is another server (RFC 9207 §2.4, RFC 8414 §3.3,
the MCP authorization spec's SEP-2468). Each near miss is refused at every place a check
happens: the receiver (``expect(issuer=...)``), ``authorize()`` (a present ``iss`` when the
server does not advertise RFC 9207), and discovery (the metadata's ``issuer``).
"""

from __future__ import annotations

from typing import Any

import pytest

import oauth_loopback as ol
from oauth_loopback._receiver._registry import StateRegistry
from tests.login.test_authorize import ISSUER, ScriptedServer, _authorize

# ISSUER is "https://as.example" (tests/login/test_authorize.py).
NEAR_MISSES = [
    pytest.param("https://AS.example", id="host-case"),
    pytest.param("HTTPS://as.example", id="scheme-case"),
    pytest.param("https://as.example/", id="trailing-slash"),
    pytest.param("https://as.example:443", id="default-port"),
    pytest.param("https://as.example.", id="trailing-dot"),
    pytest.param("https://as.%65xample", id="percent-encoded"),
    pytest.param("https://as.example ", id="trailing-space"),
    pytest.param("http://as.example", id="other-scheme"),
]


class _Waiter:
    def __init__(self, issuer: str | None) -> None:
        self.issuer = issuer
        self.require_iss = True


@pytest.mark.parametrize("iss", NEAR_MISSES)
def test_receiver_refuses_every_near_miss(iss: str) -> None:
    """expect(issuer=X): a response whose iss differs from X in any byte wakes IssuerMismatch."""
    from urllib.parse import quote

    registry: StateRegistry[_Waiter] = StateRegistry()
    registry.add("s1", _Waiter(ISSUER))
    _, outcome = registry.match(f"code=c&state=s1&iss={quote(iss, safe='')}", "App")
    assert isinstance(outcome, ol.IssuerMismatch)
    assert (outcome.expected, outcome.received) == (ISSUER, iss)


def test_receiver_accepts_the_identical_issuer() -> None:
    """The control: the identical issuer, percent-encoded in the query as browsers do, matches."""
    registry: StateRegistry[_Waiter] = StateRegistry()
    registry.add("s1", _Waiter(ISSUER))
    _, outcome = registry.match("code=c&state=s1&iss=https%3A%2F%2Fas.example", "App")
    assert isinstance(outcome, ol.AuthorizationResponse)
    assert outcome.iss == ISSUER


@pytest.mark.anyio
@pytest.mark.parametrize("iss", NEAR_MISSES)
async def test_authorize_refuses_a_near_miss_iss_from_a_server_that_does_not_advertise_it(
    iss: str,
) -> None:
    """Without RFC 9207 metadata, a present iss that is not byte-identical still fails the login."""
    server = ScriptedServer(issue_iss=False)
    with pytest.raises(ol.IssuerMismatch) as info:
        await _authorize(server, open_browser=server.browser(iss=iss))
    assert info.value.received == iss
    assert server.token_forms == []  # the code was never exchanged


@pytest.mark.anyio
@pytest.mark.parametrize("iss", NEAR_MISSES)
async def test_authorize_refuses_a_near_miss_iss_from_a_server_that_advertises_it(iss: str) -> None:
    """With RFC 9207 metadata, the receiver itself refuses the near miss; no token is asked for."""
    server = ScriptedServer(issue_iss=True)
    with pytest.raises(ol.IssuerMismatch):
        await _authorize(server, open_browser=server.browser(iss=iss))
    assert server.token_forms == []


@pytest.mark.anyio
@pytest.mark.parametrize("metadata_issuer", NEAR_MISSES)
async def test_discovery_refuses_metadata_naming_a_near_miss_issuer(metadata_issuer: str) -> None:
    """RFC 8414 §3.3: metadata whose issuer is not identical to the one asked for is not used."""
    server = ScriptedServer(metadata_issuer=metadata_issuer)
    with pytest.raises(ol.DiscoveryError) as info:
        await _authorize(server)
    assert all(metadata_issuer in why or "HTTP" in why for _, why in info.value.tried)


@pytest.mark.parametrize("given", NEAR_MISSES)
def test_given_metadata_with_a_near_miss_issuer_is_refused(given: str) -> None:
    """authorize(metadata=...) refuses a document whose issuer differs in any byte."""
    from oauth_loopback._login._metadata import given_metadata

    document: dict[str, Any] = {
        "issuer": given,
        "authorization_endpoint": f"{ISSUER}/authorize",
        "token_endpoint": f"{ISSUER}/token",
    }
    with pytest.raises(ol.UnsupportedServer, match="identical"):
        given_metadata(document, ISSUER)
