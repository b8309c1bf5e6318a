"""One measured process of ``benchmarks/felt.py``: ``python _felt_child.py MODE PLAN [FLAG...]``.

Run as a script by path (not as ``-m benchmarks...``), so that it imports nothing but what its
mode needs: the start-up of the library under test is part of what is measured. ``PLAN`` is a
JSON file (mode 0600) written by ``felt.py`` with the issuer, the client ids and the paths;
secrets (google's client secret) are in their own 0600 files, never in argv.

The browser opener of every mode records the moment it is called by writing the URL it was
given as one line to the FIFO named by ``BENCH_BROWSER_FIFO``; the benchmark process, blocked
in ``select()`` on that FIFO, takes the time and then plays the browser (it follows the URL
to the embedded authorization server and back to the receiver), so every login completes.
On success the last line on stdout is ``token <token_type>`` (never the token itself).
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any


def record(url: str) -> bool:
    """The browser opener: note the URL on the FIFO (one write, shorter than PIPE_BUF)."""
    fd = os.open(os.environ["BENCH_BROWSER_FIFO"], os.O_WRONLY)
    try:
        os.write(fd, url.encode() + b"\n")
    finally:
        os.close(fd)
    return True


def _authorize_options(plan: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"scope": plan["scope"], "open_browser": record}
    if plan.get("warm"):
        # What a store keeps between logins: the registration and the server's metadata.
        options["client_id"] = plan["client_id"]
        with open(plan["metadata_file"], encoding="utf-8") as f:
            options["metadata"] = json.load(f)
    return options


def ours_async(plan: dict[str, Any]) -> str:
    import anyio

    import oauth_loopback

    async def main() -> str:
        token = await oauth_loopback.authorize(plan["issuer"], **_authorize_options(plan))
        return token.token_type

    return anyio.run(main)


def ours_sync(plan: dict[str, Any]) -> str:
    import oauth_loopback.sync

    return oauth_loopback.sync.authorize(plan["issuer"], **_authorize_options(plan)).token_type


def _get_token_options(plan: dict[str, Any]) -> dict[str, Any]:
    import oauth_loopback

    return {
        "store": oauth_loopback.FileTokenStore(plan["store"]),
        "scope": plan["scope"],
        # "dynamic": the client is whatever the store holds, or a new registration (RFC 7591).
        "client_id": None if plan.get("dynamic") else plan["client_id"],
        "open_browser": record,
    }


def ours_get_token(plan: dict[str, Any]) -> str:
    """``get_token()`` with a file store: stored, refreshed, or a login through the opener."""
    import anyio

    import oauth_loopback

    async def main() -> str:
        token = await oauth_loopback.get_token(plan["issuer"], **_get_token_options(plan))
        return token.token_type

    return anyio.run(main)


def ours_sync_get_token(plan: dict[str, Any]) -> str:
    import oauth_loopback.sync

    return oauth_loopback.sync.get_token(plan["issuer"], **_get_token_options(plan)).token_type


def google(plan: dict[str, Any]) -> str:
    """``InstalledAppFlow.run_local_server`` from a client secrets file, as its docs show."""
    import importlib
    import webbrowser

    flow_module: Any = importlib.import_module("google_auth_oauthlib.flow")
    InstalledAppFlow = flow_module.InstalledAppFlow

    class Recorder(webbrowser.BaseBrowser):
        def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
            return record(url)

    # webbrowser.register is the documented way to add a browser; run_local_server(browser=)
    # then picks it by name.
    webbrowser.register("bench-recorder", None, Recorder("bench-recorder"), preferred=True)
    flow = InstalledAppFlow.from_client_secrets_file(plan["google_secrets"], scopes=[plan["scope"]])
    credentials = flow.run_local_server(
        host="127.0.0.1",
        port=0,
        open_browser=True,
        browser="bench-recorder",
        authorization_prompt_message="",
        timeout_seconds=30,
    )
    if not credentials.token:
        raise RuntimeError("google-auth-oauthlib returned no access token")
    return "Bearer"


def msal_silent(plan: dict[str, Any]) -> str:
    """``acquire_token_silent`` with msal's token cache and HTTP cache read from disk."""
    import importlib
    import pickle

    msal: Any = importlib.import_module("msal")
    cache = msal.SerializableTokenCache()
    with open(plan["msal_cache"], encoding="utf-8") as f:
        cache.deserialize(f.read())
    with open(plan["msal_http_cache"], "rb") as fb:
        http_cache = pickle.load(fb)  # noqa: S301 - written by felt.py a moment ago
    app = msal.PublicClientApplication(
        plan["msal_client_id"],
        oidc_authority=plan["msal_authority"],
        token_cache=cache,
        http_cache=http_cache,
    )
    accounts = app.get_accounts()
    if not accounts:
        raise RuntimeError("msal found no account in its cache")
    result = app.acquire_token_silent([plan["scope"]], account=accounts[0])
    if not result or "access_token" not in result:
        raise RuntimeError(f"msal acquire_token_silent returned {result and sorted(result)}")
    if result.get("token_source") != "cache":
        raise RuntimeError(f"msal did not answer from its cache: {result.get('token_source')}")
    return str(result.get("token_type", "Bearer"))


MODES = {
    "authorize": ours_async,
    "sync-authorize": ours_sync,
    "get-token": ours_get_token,
    "sync-get-token": ours_sync_get_token,
    "google": google,
    "msal-silent": msal_silent,
}


def main() -> int:
    mode, plan_path, *flags = sys.argv[1:]
    if "no-trio" in flags:
        # As if trio were not installed: `import trio` raises ImportError (before anything
        # that might import it is loaded; this script itself imports only the stdlib).
        sys.modules["trio"] = None  # type: ignore[assignment]
    with open(plan_path, encoding="utf-8") as f:
        plan = json.load(f)
    plan["warm"] = "warm" in flags
    plan["dynamic"] = "dynamic" in flags
    token_type = MODES[mode](plan)
    print(f"token {token_type}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
