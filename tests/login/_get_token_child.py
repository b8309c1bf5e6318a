"""A CLI run in its own process, for the cross-process test: ``get_token()`` on a file store.

Usage: ``python _get_token_child.py ISSUER STORE_DIR``. Prints ``ready`` and waits for a line on
stdin, so that the parent can start several at once; then prints the SHA-256 of the access
token it got (never the token itself). Opening a browser would be a failure: exit status 3.
"""

from __future__ import annotations

import functools
import hashlib
import sys

import anyio

import oauth_loopback as ol


def _browser(url: str) -> bool:
    sys.stdout.write("browser opened\n")
    raise SystemExit(3)


async def main(issuer: str, directory: str) -> None:
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    await anyio.to_thread.run_sync(sys.stdin.readline)
    token = await ol.get_token(issuer, store=ol.FileTokenStore(directory), open_browser=_browser)
    sys.stdout.write(hashlib.sha256(token.access_token.encode()).hexdigest() + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    anyio.run(functools.partial(main, sys.argv[1], sys.argv[2]))
