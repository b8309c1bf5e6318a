"""The embedded server's device authorization grant (RFC 8628), on authlib's rfc8628 classes.

The device endpoint hands out a ``device_code`` and a ``user_code`` (§3.2); tests play the
user with :meth:`DeviceCodes.approve` / :meth:`DeviceCodes.deny` (or the ``/device`` page's
form), and the token endpoint answers ``authorization_pending``, ``slow_down`` (polled faster
than the interval, §3.5), ``access_denied`` or ``expired_token`` until then (§3.5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant

__all__ = ["DEVICE_GRANT", "DeviceCodes", "DeviceCredential", "device_endpoint", "device_grant"]

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


@dataclass
class DeviceCredential:
    """One pending device login (authlib's DeviceCredentialMixin, duck-typed)."""

    device_code: str
    user_code: str
    client_id: str
    scope: str
    expires_at: float
    interval: float
    #: None while the user has not answered; True approved, False denied.
    approved: bool | None = None
    polls: list[float] = field(default_factory=list)

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return time.time() > self.expires_at


class DeviceCodes:
    """The server's pending device logins, by device code and by user code."""

    def __init__(self, *, interval: float, lifetime: float) -> None:
        self.interval = interval
        self.lifetime = lifetime
        self.by_device: dict[str, DeviceCredential] = {}
        self.slow_downs = 0

    def by_user_code(self, user_code: str) -> DeviceCredential | None:
        wanted = user_code.strip().upper()
        for credential in self.by_device.values():
            if credential.user_code == wanted:
                return credential
        return None

    def approve(self, user_code: str) -> None:
        self._answer(user_code, True)

    def deny(self, user_code: str) -> None:
        self._answer(user_code, False)

    def _answer(self, user_code: str, approved: bool) -> None:
        credential = self.by_user_code(user_code)
        if credential is None:
            msg = f"No device login is waiting for the user code {user_code!r}."
            raise LookupError(msg)
        credential.approved = approved


def device_endpoint(codes: DeviceCodes, verification_uri: str) -> type[DeviceAuthorizationEndpoint]:
    class _Endpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
        INTERVAL = codes.interval
        EXPIRES_IN = codes.lifetime

        def get_verification_uri(self) -> str:
            return verification_uri

        def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
            codes.by_device[data["device_code"]] = DeviceCredential(
                device_code=data["device_code"],
                user_code=data["user_code"],
                client_id=client_id,
                scope=scope or "",
                expires_at=time.time() + codes.lifetime,
                interval=codes.interval,
            )

    return _Endpoint


def device_grant(codes: DeviceCodes, user: Any) -> type[DeviceCodeGrant]:
    class _Grant(DeviceCodeGrant):  # type: ignore[misc]
        def query_device_credential(self, device_code: str) -> DeviceCredential | None:
            credential = codes.by_device.get(device_code)
            if credential is not None:
                credential.polls.append(time.monotonic())
            return credential

        def query_user_grant(self, user_code: str) -> tuple[Any, bool] | None:
            credential = codes.by_user_code(user_code)
            if credential is None or credential.approved is None:
                return None
            return user, credential.approved

        def should_slow_down(self, credential: DeviceCredential) -> bool:
            # RFC 8628 §3.5: polled again sooner than the interval allows.
            polls = credential.polls
            if len(polls) >= 2 and polls[-1] - polls[-2] < credential.interval * 0.9:
                codes.slow_downs += 1
                credential.interval += 5.0 if credential.interval >= 1 else credential.interval
                return True
            return False

    return _Grant
