"""The sans-I/O core, part 1: pending states and what an authorization response means.

No anyio, socket, h11 or authlib here (import-linter's core contract in pyproject.toml). The
``StateRegistry`` holds every pending login by its ``state`` (O(1) dispatch) and turns a
callback's query into the outcome for exactly one waiter, or a :class:`CallbackRejected`.
The handling order it implements, with the routing steps in ``_routing``:

4. state missing or repeated   -> 400; nothing consumed
5. state unknown/used/expired  -> 400 that says which; nothing consumed
6. known state, but no ``code`` nor ``error``, both (present, even empty), a repeated
   parameter, or an empty ``code``/``error`` or one with control characters
                               -> 400; the login stays pending
7. ``error=...``               -> the waiter gets AuthorizationError/-Denied; 400 page
8. ``issuer=`` set, ``iss`` different (or missing, unless ``require_iss=False``)
                               -> the waiter gets IssuerMismatch; 400 page
9. ``code=...``                -> the waiter gets an AuthorizationResponse; 200 page
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Generic, Protocol, TypeVar

from .._errors import (
    AuthorizationDenied,
    AuthorizationError,
    CallbackRejected,
    IssuerMismatch,
    OAuthLoopbackError,
)

__all__ = ["AuthorizationResponse"]


@dataclass(frozen=True)
class AuthorizationResponse:
    """A successful authorization response (RFC 6749 §4.1.2).

    ``iss`` is the RFC 9207 issuer identifier when the server sent one (checked against
    ``expect(issuer=...)`` when you gave one). ``params`` holds every query parameter.
    """

    code: str
    state: str
    iss: str | None
    params: Mapping[str, str]

    def __repr__(self) -> str:
        # Never show the code or the state: reprs end up in logs and tracebacks.
        return f"AuthorizationResponse(code=<redacted>, state=<redacted>, iss={self.iss!r})"


Outcome = AuthorizationResponse | OAuthLoopbackError


class Waiter(Protocol):
    """What the registry holds per pending state: the shell's PendingCallback."""

    @property
    def issuer(self) -> str | None: ...

    @property
    def require_iss(self) -> bool: ...


W = TypeVar("W", bound=Waiter)

# RFC 6749 §4.1.2: the parameters of an authorization response. Servers add more
# (session_state, scope, iss); those are passed through in ``params``.
_MAX_FIELDS = 64
# Remember this many finished states, so a reload of the result page gets "already
# received" instead of a scary "unknown state". Bounded: a flood cannot grow it.
_FINISHED_MEMORY = 1024


class StateRegistry(Generic[W]):
    """The pending logins of one receiver, keyed by ``state``; O(1) per lookup.

    States are single-use: a delivered, timed-out or cancelled state leaves the pending table
    for good, and is remembered (bounded) only to word the page for a late or repeated hit.
    """

    __slots__ = ("_finished", "_pending")

    def __init__(self) -> None:
        self._pending: dict[str, W] = {}
        self._finished: OrderedDict[str, str] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def __contains__(self, state: object) -> bool:
        return state in self._pending

    def add(self, state: str, waiter: W) -> None:
        """Register ``state``; ``ValueError`` if it is pending already (states are unique)."""
        if state in self._pending:
            msg = (
                "This state is already pending on this receiver. States must be unique per "
                "login: call expect() without a state to get a fresh random one."
            )
            raise ValueError(msg)
        self._pending[state] = waiter

    def forget(self, state: str, waiter: W, why: str) -> None:
        """Drop ``state`` if ``waiter`` still owns it; remember ``why`` for a late hit."""
        if self._pending.get(state) is waiter:
            del self._pending[state]
            self._remember(state, why)

    def drain(self) -> list[W]:
        """Remove and return every pending waiter (the receiver is closing)."""
        waiters = list(self._pending.values())
        self._pending.clear()
        return waiters

    def _remember(self, state: str, why: str) -> None:
        finished = self._finished
        finished[state] = why
        if len(finished) > _FINISHED_MEMORY:
            finished.popitem(last=False)

    def match(self, query: str, app_name: str) -> tuple[W, Outcome]:
        """Decide what the query of a callback means; consume the state if it is final.

        Returns the waiter to wake and what to wake it with, or raises
        :class:`CallbackRejected` (nothing consumed, every login still pending).
        """
        from urllib.parse import parse_qsl

        try:
            pairs = parse_qsl(
                query,
                keep_blank_values=True,
                encoding="utf-8",
                errors="strict",
                max_num_fields=_MAX_FIELDS,
            )
        except (UnicodeDecodeError, ValueError) as exc:
            msg = (
                "The sign-in response could not be read: its parameters are not valid UTF-8 "
                f"form data, or there are more than {_MAX_FIELDS}. Start the sign-in again "
                f"from {app_name}."
            )
            raise CallbackRejected(msg, 400, title="Unreadable response") from exc
        params: dict[str, str] = {}
        repeated: set[str] = set()
        for key, value in pairs:
            if key in params:
                repeated.add(key)
            params[key] = value

        state = params.get("state")
        if "state" in repeated:
            msg = (
                "This sign-in response carries more than one 'state' parameter, so it cannot "
                f"be matched to a login. Nothing was accepted. Start the sign-in again from "
                f"{app_name} if it does not complete."
            )
            raise CallbackRejected(msg, 400, title="Ambiguous response")
        if not state:
            msg = (
                "This address expects a sign-in response with a 'state' parameter, and this "
                "request has none. Nothing was accepted. If you were signing in, start again "
                f"from {app_name}."
            )
            raise CallbackRejected(msg, 400, title="Not a sign-in response")
        waiter = self._pending.get(state)
        if waiter is None:
            raise _not_pending(self._finished.get(state), app_name)
        if repeated:
            msg = (
                f"This sign-in response repeats the parameter(s) {', '.join(sorted(repeated))}, "
                "so it is ambiguous and was not accepted. The login is still waiting: finish "
                "it from the authorization server's page."
            )
            raise CallbackRejected(msg, 400, title="Ambiguous response")
        # Presence decides, not truthiness: "code=x&error=" carries both (RFC 6749 §4.1.2).
        has_code, has_error = "code" in params, "error" in params
        if has_code == has_error:
            what = "both 'code' and 'error'" if has_code else "neither 'code' nor 'error'"
            msg = (
                f"This sign-in response has {what} (RFC 6749 §4.1.2), so it was not "
                "accepted. The login is still waiting: finish it from the authorization "
                "server's page."
            )
            raise CallbackRejected(msg, 400, title="Incomplete response")
        name = "code" if has_code else "error"
        value = params[name]
        if not value or not value.isprintable():
            # RFC 6749 A.11 and A.7: a code is 1*VSCHAR, an error 1*NQSCHAR (printable
            # ASCII). An empty one, or one with control or invisible characters, is
            # malformed, and would reach the app, its logs and its terminal as it came.
            # (str.isprintable: no Cc, Cf, Zl, Zp, nor any space but U+0020.)
            how = "empty" if not value else "contains control or invisible characters"
            msg = (
                f"This sign-in response's '{name}' is {how} (RFC 6749 Appendix A), so it was "
                "not accepted. The login is still waiting: finish it from the authorization "
                "server's page."
            )
            title = "Incomplete response" if not value else "Malformed response"
            raise CallbackRejected(msg, 400, title=title)
        code = params.get("code")
        error = params.get("error")

        iss = params.get("iss")
        frozen = MappingProxyType(params)
        outcome: Outcome
        expected = waiter.issuer
        if expected is not None and iss != expected and (iss is not None or waiter.require_iss):
            # RFC 9207 §2.4: a present iss that differs from the expected issuer is refused
            # whatever the server advertises; a missing one when the server promises iss
            # (require_iss). On error responses too (an attacker could otherwise forge the
            # error path).
            outcome = IssuerMismatch(expected, iss)
        elif error is not None:
            cls = AuthorizationDenied if error == "access_denied" else AuthorizationError
            outcome = cls(
                error,
                params.get("error_description"),
                params.get("error_uri"),
                iss=iss,
                state=state,
                params=frozen,
            )
        else:
            assert code is not None  # has_code != has_error, and not error  # noqa: S101
            outcome = AuthorizationResponse(code=code, state=state, iss=iss, params=frozen)
        del self._pending[state]
        self._remember(state, "used")
        return waiter, outcome


def _not_pending(why: str | None, app_name: str) -> CallbackRejected:
    if why == "used":
        msg = (
            "This sign-in response was already received. If the sign-in worked, you can "
            f"close this tab and return to {app_name}."
        )
        return CallbackRejected(msg, 400, title="Already received")
    if why == "timeout":
        msg = (
            f"This sign-in took too long: {app_name} stopped waiting for it. Start the "
            f"sign-in again from {app_name}."
        )
        return CallbackRejected(msg, 400, title="Sign-in expired")
    if why is not None:
        msg = f"{app_name} is no longer waiting for this sign-in. Start it again from {app_name}."
        return CallbackRejected(msg, 400, title="Sign-in abandoned")
    msg = (
        "No login is waiting for this response on this port. It may belong to another "
        f"program, or {app_name} was restarted since the sign-in began. Nothing was "
        f"accepted. Start the sign-in again from {app_name}."
    )
    return CallbackRejected(msg, 400, title="Unknown sign-in")
