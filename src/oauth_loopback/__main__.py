"""``python -m oauth_loopback``: the same CLI as the ``oauth-loopback`` command."""

from __future__ import annotations

from ._cli import main

if __name__ == "__main__":
    raise SystemExit(main())
