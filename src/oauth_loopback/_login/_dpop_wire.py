"""What a DPoP client reads from the server (RFC 9449 §5.1, §8, §9): no JOSE, no keys.

Split from :mod:`._dpop` (whose keys and proofs need joserfc and cryptography) so that a
login deciding whether to use DPoP, and a client reading ``DPoP-Nonce`` and
``WWW-Authenticate``, import nothing heavy. :mod:`._dpop` re-exports every name.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Final

__all__ = [
    "DPOP_ALGORITHM",
    "dpop_nonce",
    "is_use_dpop_nonce",
    "parse_www_authenticate",
    "retry_nonce",
    "server_supports_dpop",
]

#: The one algorithm our keys sign with: ES256 on P-256, the one DPoP servers support most
#: (RFC 9449 §4.2 requires an asymmetric algorithm; the AT Protocol requires ES256).
DPOP_ALGORITHM: Final = "ES256"
# RFC 9449 §8.1: nonce = 1*NQCHAR, NQCHAR = %x21 / %x23-5B / %x5D-7E.
_NONCE_RE: Final = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")
# RFC 9110 §9.1 / §5.6.2: a method is a token.
HTTP_TOKEN_RE: Final = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
# RFC 9110 §11.2: token68, when it is the whole of a challenge's credentials.
_TOKEN68_RE: Final = re.compile(r"[A-Za-z0-9._~+/-]+=*(?=[ \t]*(?:,|$))")


def server_supports_dpop(metadata: Mapping[str, object]) -> bool:
    """Whether server metadata lists ES256 in ``dpop_signing_alg_values_supported``.

    RFC 9449 §5.1: a server advertises DPoP support (and the algorithms it accepts) there.
    """
    values = metadata.get("dpop_signing_alg_values_supported")
    return isinstance(values, list) and DPOP_ALGORITHM in values


# --- reading the server's answer -------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is not None:
        return value
    # A plain dict is case-sensitive; httpx-style Headers already answered above.
    wanted = name.lower()
    for key, item in headers.items():
        if key.lower() == wanted:
            return item
    return None


def dpop_nonce(headers: Mapping[str, str]) -> str | None:
    """The ``DPoP-Nonce`` response header (RFC 9449 §8.1), or None if absent or malformed.

    Keep the latest one per server and send it in the next proof to that server; the
    authorization server and each resource server have their own nonces (§9).
    """
    value = _header(headers, "DPoP-Nonce")
    if value is None:
        return None
    value = value.strip()
    return value if _NONCE_RE.fullmatch(value) else None


def parse_www_authenticate(value: str) -> list[tuple[str, dict[str, str]]]:
    """The challenges of a ``WWW-Authenticate`` value (RFC 9110 §11.6.1), in order.

    Each is ``(scheme, params)`` with the scheme and parameter names lower-cased and
    quoted-strings unescaped; a ``token68`` (RFC 9110 §11.2) is returned under the key ``""``.
    Several header lines joined with commas parse as one list. Malformed input ends the parse:
    what was read before it is returned, nothing is raised.
    """
    challenges: list[tuple[str, dict[str, str]]] = []
    text = value if isinstance(value, str) else ""
    end = len(text)
    pos = 0

    def skip(chars: str) -> None:
        nonlocal pos
        while pos < end and text[pos] in chars:
            pos += 1

    def read_token() -> str:
        nonlocal pos
        match = HTTP_TOKEN_RE.match(text, pos)
        if match is None:
            return ""
        pos = match.end()
        return match.group(0)

    def read_quoted() -> str | None:
        # quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE  (RFC 9110 §5.6.4)
        nonlocal pos
        pos += 1
        out: list[str] = []
        while pos < end:
            char = text[pos]
            if char == '"':
                pos += 1
                return "".join(out)
            if char == "\\" and pos + 1 < end:
                pos += 1
                char = text[pos]
            out.append(char)
            pos += 1
        return None  # unterminated

    # Every pass of either loop consumes input or leaves it, so both end within len(value).
    while pos < end:
        skip(" \t,")
        scheme = read_token()
        if not scheme:
            break
        params: dict[str, str] = {}
        challenges.append((scheme.lower(), params))
        skip(" \t")
        token68 = _TOKEN68_RE.match(text, pos)
        if token68 is not None:
            params[""] = token68.group(0)
            pos = token68.end()
            continue
        while pos < end and text[pos] != ",":
            start = pos
            name = read_token()
            skip(" \t")
            if not name or pos >= end or text[pos] != "=":
                if name:
                    pos = start  # a bare token: the scheme of the next challenge
                    break
                return challenges
            pos += 1
            skip(" \t")
            if pos < end and text[pos] == '"':
                item = read_quoted()
            else:
                item = read_token() or None
            if item is None:
                return challenges
            params[name.lower()] = item
            skip(" \t")
            if pos < end and text[pos] == ",":
                skip(" \t,")
            elif pos < end:
                return challenges  # garbage after a parameter
    return challenges


def is_use_dpop_nonce(
    status_code: int, headers: Mapping[str, str], body: bytes | str = b""
) -> bool:
    """Whether a response asks for a new proof with the server's nonce.

    The authorization server says so with 400 and ``{"error": "use_dpop_nonce"}`` (RFC 9449
    §8); a resource server with 401 and ``WWW-Authenticate: DPoP error="use_dpop_nonce"``
    (§9). Either way the nonce to use is in ``DPoP-Nonce`` (:func:`dpop_nonce`).
    """
    if status_code == 400:
        try:
            document = json.loads(body)
        except ValueError:  # also UnicodeDecodeError
            return False
        return isinstance(document, dict) and document.get("error") == "use_dpop_nonce"
    if status_code == 401:
        challenge = _header(headers, "WWW-Authenticate")
        if challenge is None:
            return False
        return any(
            scheme == "dpop" and params.get("error") == "use_dpop_nonce"
            for scheme, params in parse_www_authenticate(challenge)
        )
    return False


def retry_nonce(
    status_code: int,
    headers: Mapping[str, str],
    body: bytes | str = b"",
    *,
    sent_nonce: str | None,
    retried: bool,
) -> str | None:
    """The nonce to retry a request with, or None when it must not be retried.

    RFC 9449 §8 and §9: a ``use_dpop_nonce`` answer that carries a ``DPoP-Nonce`` is worth
    exactly one more attempt, with a fresh proof signed over that nonce. Not when this request
    was already a retry (``retried``), not when the server sent no usable nonce, and not when
    it sent back the very nonce the refused proof carried (``sent_nonce``): the same proof
    content would be refused again.
    """
    if retried or not is_use_dpop_nonce(status_code, headers, body):
        return None
    nonce = dpop_nonce(headers)
    if nonce is None or nonce == sent_nonce:
        return None
    return nonce
