"""``oauth-loopback demo``: a complete login against the embedded authorization server."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from .._config import CallbackConfig
from .._errors import OAuthLoopbackError

if TYPE_CHECKING:
    pass

__all__ = ["demo"]

from ._login import describe_token


async def demo(backend: str) -> int:
    from .. import testing
    from .._login._authorize import authorize

    print(
        f"oauth-loopback demo (backend {backend}): a complete login against an embedded "
        f"authorization server, with a headless browser stand-in"
    )
    try:
        async with testing.AuthorizationServer() as server:
            print(
                f"  server        {server.issuer} (embedded: PKCE S256 required, dynamic "
                f"registration, RFC 9207 iss)"
            )
            started = last = time.perf_counter()

            def on_step(name: str, detail: str) -> None:
                nonlocal last
                now = time.perf_counter()
                print(f"  {name:<13}{(now - last) * 1e3:8.2f} ms  {detail}")
                last = now

            token = await authorize(
                server.issuer,
                config=CallbackConfig(app_name="oauth-loopback demo"),
                open_browser=testing.follow_redirects,
                on_step=on_step,
                timeout=30,
            )
            total = time.perf_counter() - started
    except OAuthLoopbackError as exc:
        print(f"demo FAILED: {exc}", file=sys.stderr)
        return 1
    print(f"  result                   {describe_token(token)}")
    print(f"  total       {total * 1e3:8.2f} ms")
    print("ok: the login completed (run 'oauth-loopback login ISSUER' for a real one)")
    return 0
