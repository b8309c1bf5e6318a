"""The stored records: JSON round trip, validation, expiry helpers, and reprs without secrets."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import pytest

from oauth_loopback import OAuthLoopbackError
from oauth_loopback._errors import TokenStoreError
from oauth_loopback._store import (
    CachedMetadata,
    ClientRegistration,
    LoginKey,
    StoredLogin,
    StoredTokens,
)
from oauth_loopback._store._records import FORMAT, FORMAT_VERSION, LoginFormatError

from ._helpers import ACCESS, ISSUER, REFRESH, RESOURCE, SECRETS, sample_login


def test_login_round_trips_through_json() -> None:
    """A login written to JSON and read back is equal to the original, every part included."""
    login = sample_login()
    text = json.dumps(login.to_dict())
    again = StoredLogin.from_dict(json.loads(text))
    assert again == login
    assert again.client is not None
    assert again.client.extra["client_name"] == "demo"
    assert again.tokens is not None
    assert again.tokens.extra["refresh_token_expires_in"] == 86400
    assert again.dpop_key is not None
    assert again.dpop_key["crv"] == "P-256"


def test_json_form_carries_the_format_marker_and_version() -> None:
    """The JSON form names its format and version, so a reader can tell ours from a stranger."""
    data = sample_login().to_dict()
    assert data["format"] == FORMAT == "oauth-loopback/login"
    assert data["version"] == FORMAT_VERSION == 1


def test_unknown_fields_survive_a_rewrite() -> None:
    """Fields a newer 1.x writer added are kept in extra and written back unchanged."""
    data = sample_login().to_dict()
    data["future_field"] = {"nested": [1, 2]}
    tokens = data["tokens"]
    assert isinstance(tokens, dict)
    tokens["dpop_nonce"] = "n-1"
    login = StoredLogin.from_dict(data)
    assert login.extra == {"future_field": {"nested": [1, 2]}}
    rewritten = login.to_dict()
    assert rewritten["future_field"] == {"nested": [1, 2]}
    rewritten_tokens = rewritten["tokens"]
    assert isinstance(rewritten_tokens, dict)
    assert rewritten_tokens["dpop_nonce"] == "n-1"


def test_to_dict_is_a_copy_the_caller_may_change() -> None:
    """Changing what to_dict returned never changes the record."""
    login = sample_login()
    data = login.to_dict()
    tokens = data["tokens"]
    assert isinstance(tokens, dict)
    tokens["access_token"] = "changed"
    assert login.tokens is not None
    assert login.tokens.access_token == ACCESS


def test_records_are_frozen() -> None:
    """Records cannot be changed in place; dataclasses.replace makes a changed copy."""
    login = sample_login()
    with pytest.raises(dataclasses.FrozenInstanceError):
        login.issuer = "https://other.example"  # type: ignore[misc]
    assert login.extra == {}
    with pytest.raises(TypeError):
        login.extra["x"] = 1  # type: ignore[index]
    changed = dataclasses.replace(login, tokens=None)
    assert changed.tokens is None
    assert login.tokens is not None


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda: sample_login(), id="login"),
        pytest.param(lambda: sample_login().client, id="client"),
        pytest.param(lambda: sample_login().tokens, id="tokens"),
        pytest.param(lambda: sample_login().metadata, id="metadata"),
    ],
)
def test_reprs_never_show_a_secret(make: object) -> None:
    """repr() and str() of every record hide tokens, secrets and keys (they end up in logs)."""
    assert callable(make)
    record = make()
    for text in (repr(record), str(record), f"{record}"):
        for secret in SECRETS:
            assert secret not in text
    if isinstance(record, StoredLogin):
        assert "access_token=<redacted>" in repr(record)
        assert "dpop_key=<redacted>" in repr(record)
        assert ISSUER in repr(record)


def test_repr_says_which_secrets_are_absent() -> None:
    """A missing secret shows as None, a present one as <redacted>: the repr stays useful."""
    tokens = StoredTokens(access_token=ACCESS)
    assert "refresh_token=None" in repr(tokens)
    assert "access_token=<redacted>" in repr(tokens)


def test_client_belonging_to_another_issuer_is_refused() -> None:
    """A login refuses a registration of another issuer: credentials never cross servers."""
    client = ClientRegistration(issuer="https://other.example", client_id="c", obtained="dynamic")
    with pytest.raises(ValueError, match="never used with another issuer"):
        StoredLogin(issuer=ISSUER, client=client)


def test_metadata_of_another_issuer_is_refused() -> None:
    """Cached metadata must name the login's issuer exactly (RFC 8414 §3.3)."""
    metadata = CachedMetadata(document={"issuer": ISSUER + "/"}, fetched_at=1.0)
    with pytest.raises(ValueError, match="identical"):
        StoredLogin(issuer=ISSUER, metadata=metadata)


@pytest.mark.parametrize(
    ("issuer", "other"),
    [
        pytest.param("https://as.example", "https://as.example/", id="trailing-slash"),
        pytest.param("https://as.example", "https://AS.example", id="case"),
        pytest.param("https://as.example", "https://as.example:443", id="default-port"),
    ],
)
def test_login_keys_compare_issuers_byte_for_byte(issuer: str, other: str) -> None:
    """Two spellings of an issuer are two keys with two file names: nothing is normalised."""
    assert LoginKey(issuer) != LoginKey(other)
    assert LoginKey(issuer).digest != LoginKey(other).digest


def test_login_key_digest_is_stable_and_includes_the_resource() -> None:
    """The digest names a file: the same key always gives it, another resource another."""
    assert LoginKey(ISSUER, RESOURCE).digest == LoginKey(ISSUER, RESOURCE).digest
    assert LoginKey(ISSUER, RESOURCE).digest != LoginKey(ISSUER).digest
    assert len(LoginKey(ISSUER).digest) == 32
    assert sample_login().key == LoginKey(ISSUER, RESOURCE)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        pytest.param({"issuer": ""}, "issuer", id="empty-issuer"),
        pytest.param({"resource": ""}, "resource", id="empty-resource"),
        pytest.param({"dpop_key": {"d": "x"}}, "JWK", id="dpop-key-without-kty"),
        pytest.param({"extra": {"tokens": 1}}, "repeat", id="extra-shadows-a-field"),
        pytest.param({"extra": {"x": object()}}, "JSON", id="extra-not-json"),
        pytest.param({"updated_at": float("nan")}, "time", id="nan-time"),
    ],
)
def test_invalid_logins_are_refused_with_the_field_named(
    kwargs: dict[str, object], match: str
) -> None:
    """Building a record with a wrong field raises at once and names the field."""
    fields: dict[str, object] = {"issuer": ISSUER, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        StoredLogin(**fields)  # type: ignore[arg-type]


def test_tokens_from_a_token_response() -> None:
    """A token response becomes tokens with an absolute expiry; other fields go to extra."""
    tokens = StoredTokens.from_response(
        {
            "access_token": ACCESS,
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": REFRESH,
            "scope": "a b",
            "custom": True,
        },
        received_at=1000.0,
    )
    assert tokens.expires_at == 4600.0
    assert tokens.refresh_token == REFRESH
    assert tokens.scope == "a b"
    assert tokens.extra == {"custom": True}


@pytest.mark.parametrize(
    ("expires_in", "expected"),
    [
        pytest.param(60, 1060.0, id="int"),
        pytest.param("60", 1060.0, id="decimal-string"),
        pytest.param(60.5, 1060.5, id="float"),
        pytest.param(None, None, id="absent"),
        pytest.param("soon", None, id="garbage"),
        pytest.param(True, None, id="bool"),
    ],
)
def test_expires_in_is_read_leniently(expires_in: object, expected: float | None) -> None:
    """expires_in as servers really send it (numbers, digit strings) gives the absolute expiry."""
    response: dict[str, object] = {"access_token": ACCESS, "token_type": "Bearer"}
    if expires_in is not None:
        response["expires_in"] = expires_in
    assert StoredTokens.from_response(response, received_at=1000.0).expires_at == expected


def test_refresh_response_without_a_refresh_token_keeps_the_old_one() -> None:
    """RFC 6749 §6: a refresh response without refresh_token or scope leaves both unchanged."""
    old = StoredTokens(access_token="old", refresh_token=REFRESH, scope="a b")
    new = StoredTokens.from_response(
        {"access_token": "new", "token_type": "Bearer", "expires_in": 10},
        received_at=0.0,
        previous=old,
    )
    assert (new.access_token, new.refresh_token, new.scope) == ("new", REFRESH, "a b")


def test_refresh_response_with_a_rotated_refresh_token_replaces_it() -> None:
    """A rotated refresh token (RFC 6749 §6, RFC 9700 §4.14) replaces the old one."""
    old = StoredTokens(access_token="old", refresh_token="old-rt")
    new = StoredTokens.from_response(
        {"access_token": "new", "token_type": "Bearer", "refresh_token": "new-rt"}, previous=old
    )
    assert new.refresh_token == "new-rt"


@pytest.mark.parametrize(
    "response",
    [
        pytest.param({"token_type": "Bearer"}, id="no-access-token"),
        pytest.param({"access_token": "", "token_type": "Bearer"}, id="empty-access-token"),
        pytest.param({"access_token": "x"}, id="no-token-type"),
    ],
)
def test_token_response_without_required_fields_is_refused(response: dict[str, object]) -> None:
    """RFC 6749 §5.1's required fields must be there."""
    with pytest.raises(LoginFormatError, match=r"token response\.(access_token|token_type)"):
        StoredTokens.from_response(response)


@pytest.mark.parametrize(
    ("expires_at", "now", "valid"),
    [
        pytest.param(None, 1e12, True, id="unknown-expiry-counts-as-valid"),
        pytest.param(1000.0, 900.0, True, id="well-before"),
        pytest.param(1000.0, 940.0, False, id="inside-the-leeway"),
        pytest.param(1000.0, 1000.0, False, id="at-expiry"),
        pytest.param(1000.0, 2000.0, False, id="long-expired"),
    ],
)
def test_is_valid_keeps_a_leeway(expires_at: float | None, now: float, valid: bool) -> None:
    """is_valid() is false from one minute before expiry, so a request never starts stale."""
    tokens = StoredTokens(access_token=ACCESS, expires_at=expires_at)
    assert tokens.is_valid(now) is valid


def test_is_valid_leeway_is_adjustable_and_expires_in_counts_down() -> None:
    """leeway= moves the edge; expires_in() says how long is left."""
    tokens = StoredTokens(access_token=ACCESS, expires_at=1000.0)
    assert tokens.is_valid(990.0, leeway=5)
    assert not tokens.is_valid(990.0, leeway=10)
    assert tokens.expires_in(990.0) == 10.0
    assert StoredTokens(access_token=ACCESS).expires_in() is None


def test_registration_response_becomes_a_registration() -> None:
    """An RFC 7591 response is read with its secret, URIs, method and the rest kept in extra."""
    client = ClientRegistration.from_registration_response(
        {
            "client_id": "abc",
            "client_secret": "s",
            "client_secret_expires_at": 0,
            "redirect_uris": ["http://127.0.0.1:1234/callback"],
            "client_id_issued_at": 17,
            "registration_access_token": "rat",
            "registration_client_uri": "https://as.example/reg/abc",
        },
        issuer=ISSUER,
    )
    assert client.issuer == ISSUER
    assert client.obtained == "dynamic"
    assert client.redirect_uris == ("http://127.0.0.1:1234/callback",)
    assert client.token_endpoint_auth_method == "client_secret_basic"  # RFC 7591 §2 default
    assert client.registration_access_token == "rat"
    assert client.extra == {"client_id_issued_at": 17}
    assert not client.secret_expired(now=1e12)  # 0: never expires


@pytest.mark.parametrize(
    ("secret", "method", "expected"),
    [
        pytest.param(None, "", "none", id="public-default"),
        pytest.param("s", "", "client_secret_basic", id="confidential-default"),
        pytest.param("s", "client_secret_post", "client_secret_post", id="explicit"),
    ],
)
def test_auth_method_defaults_as_rfc_7591_says(
    secret: str | None, method: str, expected: str
) -> None:
    """An unset token_endpoint_auth_method is RFC 7591 §2's default for the secret (or none)."""
    client = ClientRegistration(
        issuer=ISSUER,
        client_id="c",
        obtained="preregistered",
        client_secret=secret,
        token_endpoint_auth_method=method,
    )
    assert client.token_endpoint_auth_method == expected


def test_registration_response_without_client_id_is_refused() -> None:
    """A registration response must carry client_id (RFC 7591 §3.2.1)."""
    with pytest.raises(ValueError, match=r"client_id.*RFC 7591"):
        ClientRegistration.from_registration_response({"client_secret": "s"}, issuer=ISSUER)


def test_client_secret_expiry() -> None:
    """A secret with an expiry counts as expired once it passed."""
    client = ClientRegistration(
        issuer=ISSUER, client_id="c", obtained="dynamic", client_secret_expires_at=100
    )
    assert not client.secret_expired(now=99)
    assert client.secret_expired(now=100)


def test_redirect_uris_must_not_be_a_bare_string() -> None:
    """redirect_uris is a sequence of URIs; a single string is a mistake, not a list of chars."""
    with pytest.raises(ValueError, match="sequence of strings"):
        ClientRegistration(
            issuer=ISSUER,
            client_id="c",
            obtained="dynamic",
            redirect_uris="http://127.0.0.1/callback",  # type: ignore[arg-type]
        )


def test_unknown_registration_kind_is_refused() -> None:
    """obtained= is one of dynamic, preregistered, metadata_document."""
    with pytest.raises(ValueError, match="metadata_document"):
        ClientRegistration(issuer=ISSUER, client_id="c", obtained="guessed")  # type: ignore[arg-type]


def _damaged(change: str) -> dict[str, object]:
    data = sample_login().to_dict()
    client = data["client"]
    tokens = data["tokens"]
    assert isinstance(client, dict)
    assert isinstance(tokens, dict)
    if change == "client-issuer":
        client["issuer"] = "https://evil.example"
    elif change == "tokens-not-object":
        data["tokens"] = [1]
    elif change == "access-token-number":
        tokens["access_token"] = 5
    elif change == "expires-at-string":
        tokens["expires_at"] = "tomorrow"
    elif change == "redirect-uris-not-list":
        client["redirect_uris"] = "http://127.0.0.1/callback"
    elif change == "version-string":
        data["version"] = "1"
    elif change == "no-issuer":
        del data["issuer"]
    elif change == "metadata-issuer":
        data["metadata"] = {"document": {"issuer": "https://evil.example"}, "fetched_at": 1}
    return data


@pytest.mark.parametrize(
    ("change", "match"),
    [
        pytest.param("client-issuer", "never used with another issuer", id="client-issuer"),
        pytest.param("tokens-not-object", "tokens", id="tokens-not-object"),
        pytest.param("access-token-number", r"tokens\.access_token", id="access-token-number"),
        pytest.param("expires-at-string", r"tokens\.expires_at", id="expires-at-string"),
        pytest.param("redirect-uris-not-list", r"client\.redirect_uris", id="uris-not-list"),
        pytest.param("version-string", "version", id="version-string"),
        pytest.param("no-issuer", r"login\.issuer", id="no-issuer"),
        pytest.param("metadata-issuer", "identical", id="metadata-issuer"),
    ],
)
def test_damaged_json_names_the_field(change: str, match: str) -> None:
    """A damaged record is refused as "damaged", naming the field, never showing a secret."""
    with pytest.raises(LoginFormatError, match=match) as caught:
        StoredLogin.from_dict(_damaged(change))
    assert caught.value.problem == "damaged"
    for secret in SECRETS:
        assert secret not in str(caught.value)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param({"access_token": ACCESS}, id="bare-token-json"),
        pytest.param([1, 2], id="list"),
        pytest.param({"format": "other/thing", "version": 1}, id="other-format"),
    ],
)
def test_foreign_json_is_refused_as_foreign(data: object) -> None:
    """JSON that is not an oauth-loopback login is "foreign", not misread."""
    with pytest.raises(LoginFormatError) as caught:
        StoredLogin.from_dict(data)
    assert caught.value.problem == "foreign"


def test_newer_format_version_is_refused_as_newer() -> None:
    """A file of a newer format version is refused instead of being half-understood."""
    data = sample_login().to_dict()
    data["version"] = FORMAT_VERSION + 1
    with pytest.raises(LoginFormatError) as caught:
        StoredLogin.from_dict(data)
    assert caught.value.problem == "newer"
    assert caught.value.issuer == ISSUER


def test_parts_may_be_missing() -> None:
    """A login may hold only a registration, only tokens, or nothing but its key."""
    bare = StoredLogin(issuer=ISSUER)
    assert StoredLogin.from_dict(bare.to_dict()) == bare
    only_tokens = StoredLogin(issuer=ISSUER, tokens=StoredTokens(access_token=ACCESS))
    assert StoredLogin.from_dict(only_tokens.to_dict()) == only_tokens


def test_records_are_hashable_and_deep_copyable() -> None:
    """Records work as dict keys and survive copy.deepcopy."""
    login = sample_login()
    assert {login: 1}[copy.deepcopy(login)] == 1


def test_token_store_error_is_typed_and_pickles() -> None:
    """TokenStoreError is an OAuthLoopbackError and keeps its path across pickling."""
    error = TokenStoreError("the message", path="/x/y.json")
    assert isinstance(error, OAuthLoopbackError)
    again = pickle.loads(pickle.dumps(error))  # noqa: S301  (our own object)
    assert (str(again), again.path) == ("the message", "/x/y.json")


def test_metadata_age() -> None:
    """CachedMetadata.age() tells how old the copy is, so a caller can decide to rediscover."""
    metadata = CachedMetadata(document={"issuer": ISSUER}, fetched_at=100.0)
    assert metadata.age(now=160.0) == 60.0


def test_importing_the_stores_loads_no_optional_machinery() -> None:
    """`import oauth_loopback` skips the stores; the stores defer filelock, platformdirs, keyring."""
    import subprocess
    import sys

    script = (
        "import sys, oauth_loopback\n"
        "assert 'oauth_loopback._store' not in sys.modules\n"
        "import oauth_loopback._store\n"
        "print(sorted(m for m in ('filelock', 'platformdirs', 'keyring') if m in sys.modules))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
