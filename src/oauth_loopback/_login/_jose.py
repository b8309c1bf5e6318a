"""What the DPoP and ID token modules share on top of joserfc."""

from __future__ import annotations

import base64
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

from joserfc import jws
from joserfc.errors import SecurityWarning

__all__ = ["MIN_RSA_BITS", "PARSER", "b64url", "quiet_joserfc"]

# RFC 7518 §3.3: "A key of size 2048 bits or larger MUST be used" with RS*/PS*.
MIN_RSA_BITS: Final = 2048

#: The registry to pass to ``jws.extract_compact``: joserfc's default header limit (512
#: bytes) is too small for a header that carries an RSA ``jwk`` (a DPoP proof) or ``x5c``;
#: 8 KiB still bounds it. The payload and signature keep joserfc's limits.
PARSER: Final = jws.JWSRegistry(strict_check_header=False)
PARSER.max_header_length = 8192


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


@contextmanager
def quiet_joserfc() -> Iterator[None]:
    """Silence joserfc's SecurityWarnings for the checks we enforce ourselves.

    joserfc warns when it imports an RSA key under 2048 bits (we refuse such keys, RFC 7518
    §3.3) and, from 1.8, when it verifies ``EdDSA`` (RFC 9864 prefers ``Ed25519``; issuers
    still sign with ``EdDSA``). Neither is for the user of this library to act on, and under
    ``-W error`` either would turn a clear refusal into a crash.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SecurityWarning)
        yield
