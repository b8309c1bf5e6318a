"""The package root: every public name, with nothing heavy imported until a name is used."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import oauth_loopback as ol
from oauth_loopback._receiver import _receiver, _registry


def test_every_public_name_is_listed_and_resolves() -> None:
    """`__all__`, `dir()` and `from oauth_loopback import *` give every public name, each
    shown under the public path."""
    namespace: dict[str, object] = {}
    exec("from oauth_loopback import *", namespace)  # noqa: S102  (the star import itself)
    assert set(ol.__all__) <= set(namespace)
    assert set(ol.__all__) <= set(dir(ol))
    for name in ol.__all__:
        value = getattr(ol, name)
        if isinstance(value, type) or callable(value):
            assert value.__module__ == "oauth_loopback", name


def test_receiver_names_are_the_receivers_objects() -> None:
    """The lazily loaded receiver names are the receiver modules' own objects."""
    assert ol.open_receiver is _receiver.open_receiver
    assert ol.CallbackReceiver is _receiver.CallbackReceiver
    assert ol.PendingCallback is _receiver.PendingCallback
    assert ol.AuthorizationResponse is _registry.AuthorizationResponse


def test_import_loads_no_event_loop_library_until_the_receiver_is_used() -> None:
    """`import oauth_loopback` (errors, config, stores) imports none of anyio, asyncio, h11,
    trio, authlib, httpx2; `ol.open_receiver` then loads anyio."""
    probe = textwrap.dedent(
        """
        import sys
        import oauth_loopback as ol
        heavy = ("anyio", "asyncio", "h11", "trio", "authlib", "httpx2")
        ol.CallbackConfig(), ol.OAuthLoopbackError, ol.FileTokenStore, ol.Token
        print([m for m in heavy if m in sys.modules])
        ol.open_receiver
        print([m for m in heavy if m in sys.modules])
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    before, after = result.stdout.splitlines()
    assert before == "[]"
    assert "anyio" in after
