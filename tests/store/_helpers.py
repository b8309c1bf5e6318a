"""Shared pieces of the store tests: sample logins full of recognisable secrets, a keyring."""

from __future__ import annotations

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError, PasswordSetError

from oauth_loopback._store import (
    CachedMetadata,
    ClientRegistration,
    StoredLogin,
    StoredTokens,
)

ISSUER = "https://as.example"
RESOURCE = "https://mcp.example/mcp"

# Every secret a login can hold, each a distinct string a leak check can search for.
ACCESS = "ACCESS-TOKEN-c5e1f0a9"
REFRESH = "REFRESH-TOKEN-7d2b44e0"
ID_TOKEN = "ID-TOKEN-e3a1c9d7"
CLIENT_SECRET = "CLIENT-SECRET-0a9f3b21"
REGISTRATION_TOKEN = "REGISTRATION-TOKEN-9be47c02"
DPOP_PRIVATE = "DPOP-PRIVATE-D-4f61aa83"
SECRETS = (ACCESS, REFRESH, ID_TOKEN, CLIENT_SECRET, REGISTRATION_TOKEN, DPOP_PRIVATE)


def sample_login(
    issuer: str = ISSUER, resource: str | None = RESOURCE, *, access: str = ACCESS
) -> StoredLogin:
    """A login with every part filled in, every secret one of SECRETS."""
    return StoredLogin(
        issuer=issuer,
        resource=resource,
        client=ClientRegistration(
            issuer=issuer,
            client_id="client-123",
            obtained="dynamic",
            client_secret=CLIENT_SECRET,
            redirect_uris=("http://127.0.0.1:53682/callback",),
            token_endpoint_auth_method="client_secret_post",
            registration_client_uri=f"{issuer}/register/client-123",
            registration_access_token=REGISTRATION_TOKEN,
            client_secret_expires_at=0,
            extra={"client_name": "demo", "client_id_issued_at": 1700000000},
        ),
        tokens=StoredTokens(
            access_token=access,
            token_type="Bearer",
            refresh_token=REFRESH,
            expires_at=1900000000.0,
            scope="openid offline_access",
            id_token=ID_TOKEN,
            extra={"refresh_token_expires_in": 86400},
        ),
        dpop_key={"kty": "EC", "crv": "P-256", "x": "xx", "y": "yy", "d": DPOP_PRIVATE},
        metadata=CachedMetadata(
            document={"issuer": issuer, "token_endpoint": f"{issuer}/token"},
            fetched_at=1800000000.0,
        ),
    )


class DictKeyring(KeyringBackend):
    """A real keyring backend that keeps its entries in a dict (one per test).

    ``max_size`` makes it refuse large values the way size-limited backends do (Windows
    Credential Manager stops at 2560 bytes), with keyring's own PasswordSetError.
    """

    priority = 0.1  # keyring reads it from the class

    def __init__(self, max_size: int | None = None) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # keyring's __init__ is untyped
        self.entries: dict[tuple[str, str], str] = {}
        self.max_size = max_size

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.max_size is not None and len(password) > self.max_size:
            msg = f"the value is longer than {self.max_size} characters"
            raise PasswordSetError(msg)
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            msg = "no such entry"
            raise PasswordDeleteError(msg) from None
