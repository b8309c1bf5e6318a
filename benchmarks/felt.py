"""What a user feels, as whole processes: time to the browser, time to a stored token.

Every figure is one fresh process of this interpreter, from ``Popen`` to a moment the user
would notice, against the embedded authorization server (:mod:`oauth_loopback.testing`)
running on loopback in this process (an event loop thread of its own). The contenders run
interleaved, round after round, so drift hits all alike; the first round is discarded (it warms
the page cache and writes the byte-code caches under a private ``PYTHONPYCACHEPREFIX``).

* **time to browser**: until the browser opener is *invoked*. Library calls get an opener
  that writes the URL to a FIFO (ours: ``open_browser=``; google-auth-oauthlib: a browser
  added with ``webbrowser.register`` and picked with ``run_local_server(browser=)``); the
  ``oauth-loopback login`` command gets a ``$BROWSER`` shell script that does the same (its
  own start-up is measured separately and reported). This process sits in ``select()`` on the
  FIFO and takes the time when the line arrives, then plays the browser
  (``testing.follow_redirects``) so that every login completes and is checked (exit status 0,
  a token). Cold: nothing known, so discovery and dynamic registration (RFC 8414, RFC 7591);
  warm: what a store keeps between logins (the client and the server's metadata).
* **time to a stored token** / **to a refreshed token**: until the process has printed the
  token and exited (what ``$(oauth-loopback token ISSUER)`` waits for). The stores are primed
  by a real ``get_token()`` login in this process, untimed.

The references, measured in the same rounds: ``python -c pass`` and
``python -c "import anyio, h11"`` (the least a process needs to receive a callback at all).

A new contender is one :class:`Case` in :data:`CASES` (or :func:`register`). A case can be
registered before what it measures exists (``unavailable=``): it is skipped, saying why, until
it does (``get_token()``, ``sync.get_token()`` and ``oauth-loopback token`` were, and are
measured since they landed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import html
import importlib.util
import json
import os
import re
import select
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

from ._stats import Summary, ns, summarise

CHILD = Path(__file__).resolve().parent / "_felt_child.py"
SCOPE = "read"
# The $BROWSER command of `oauth-loopback login`: webbrowser runs it with the URL (or, should
# the launcher hand over a file instead, its path) as the only argument.
BROWSER_SCRIPT = '#!/bin/sh\nprintf "%s\\n" "$1" > "$BENCH_BROWSER_FIFO"\n'
# How long one process may take before the run is declared broken.
TIMEOUT = 60.0

Group = Literal["reference", "browser", "stored", "refreshed"]


class CaseFailed(RuntimeError):
    """A measured process did not do its job (the run stops: a figure would be a lie)."""


@dataclasses.dataclass(frozen=True)
class Case:
    """One contender: how to start its process, and the moment that stops the clock."""

    key: str
    label: str
    group: Group
    contender: str
    #: argv and extra environment, given the harness.
    command: Callable[[Harness], tuple[list[str], dict[str, str]]]
    #: "browser": until the opener is invoked (then the login is completed, untimed);
    #: "exit": until the process has exited.
    until: Literal["browser", "exit"] = "exit"
    #: None when it can run here, else why not (shown in the table).
    unavailable: Callable[[], str | None] = lambda: None
    #: Untimed, before every sample (e.g. restore a token store).
    prepare: Callable[[Harness, Case], None] | None = None
    #: What the process must have printed on stdout to count (None: nothing checked).
    check: Callable[[str], bool] | None = lambda out: "token " in out
    #: Which token grants the server must see during the sample: None = not checked.
    grants: tuple[str, ...] | None = None
    #: Which embedded server: "main", or "refresh" (access tokens that expire at once).
    server: Literal["main", "refresh"] = "main"
    #: Compared against the fastest peer of its group ("ours"), or a peer itself.
    ours: bool = False
    #: Measured by ``--quick`` too (one case per contender and moment).
    quick: bool = False


# --- the harness ----------------------------------------------------------------------------


class Harness:
    """The embedded servers, the FIFO, the plans and the clean environment of the children."""

    def __init__(self, stack: contextlib.ExitStack) -> None:
        from anyio.from_thread import start_blocking_portal

        self._stack = stack
        self.dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-felt-")))
        self.pycache = self.dir / "pycache"
        self.fifo_path = self.dir / "browser.fifo"
        os.mkfifo(self.fifo_path, 0o600)
        # Read-write: this end never sees EOF, so select() waits for data only.
        self.fifo = os.open(self.fifo_path, os.O_RDWR | os.O_NONBLOCK)
        stack.callback(os.close, self.fifo)
        self.browser = self.dir / "browser"
        self.browser.write_text(BROWSER_SCRIPT)
        self.browser.chmod(stat.S_IRWXU)
        self.portal = stack.enter_context(start_blocking_portal("asyncio"))
        self._servers: dict[str, Any] = {}
        self._plans: dict[str, Path] = {}

    # The servers and what the children are told about them.

    def server(self, which: str = "main") -> Any:
        if which not in self._servers:
            from oauth_loopback.testing import AuthorizationServer

            # "refresh": access tokens live 1 s, so a stored one is due for refresh at once.
            server = AuthorizationServer(token_lifetime=1 if which == "refresh" else 3600)
            self._servers[which] = self._stack.enter_context(
                self.portal.wrap_async_context_manager(server)
            )
        return self._servers[which]

    def plan(self, which: str = "main") -> Path:
        """The JSON plan of the children (issuer, client ids, file names); mode 0600."""
        if which in self._plans:
            return self._plans[which]
        server = self.server(which)
        client_id = self.portal.call(
            lambda: server.register_client(["http://127.0.0.1/callback"], client_name="bench")
        )
        metadata_file = self.dir / f"metadata-{which}.json"
        _private(metadata_file, json.dumps(dict(server.metadata)))
        plan: dict[str, Any] = {
            "issuer": server.issuer,
            "scope": SCOPE,
            "client_id": client_id,
            "metadata_file": str(metadata_file),
            "store": str(self.store(which)),
        }
        if which == "main":
            plan["google_secrets"] = str(self._google_secrets(server))
            if importlib.util.find_spec("msal") is not None:
                plan.update(self._msal(server, client_id))
        path = self.dir / f"plan-{which}.json"
        _private(path, json.dumps(plan))
        self._plans[which] = path
        return path

    def store(self, which: str = "main") -> Path:
        """The token store directory of the cases on ``which`` server."""
        return self.dir / f"store-{which}"

    def prime(self, which: str, *, dynamic: bool, keep_tokens: bool) -> None:
        """A real ``get_token()`` login into the store, on the portal's loop (untimed set-up).

        ``dynamic``: registered by the login (RFC 7591) rather than the pre-registered client;
        ``keep_tokens=False``: the tokens are dropped again, leaving the registration and the
        metadata the store keeps for the next login.
        """
        plan = self.plan_data(which)

        async def login() -> None:
            import oauth_loopback
            from oauth_loopback.testing import follow_redirects

            async def browser(url: str) -> None:
                await follow_redirects(_url_from(url))

            store = oauth_loopback.FileTokenStore(plan["store"])
            await oauth_loopback.get_token(
                plan["issuer"],
                store=store,
                scope=SCOPE,
                client_id=None if dynamic else plan["client_id"],
                open_browser=browser,
            )
            if not keep_tokens:
                key = oauth_loopback.LoginKey(plan["issuer"])
                stored = await store.load(key)
                if stored is None or stored.client is None:
                    raise CaseFailed("get_token() stored no registration to start from")
                await store.save(dataclasses.replace(stored, tokens=None))

        self.portal.call(login)

    def plan_data(self, which: str = "main") -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.plan(which).read_text())
        return data

    def _google_secrets(self, server: Any) -> Path:
        """A confidential client for google-auth-oauthlib: requests-oauthlib sends its secret with
        HTTP Basic (RFC 6749 §2.3.1)."""
        client_id = self.portal.call(
            lambda: server.register_client(
                ["http://127.0.0.1/"],
                token_endpoint_auth_method="client_secret_basic",  # noqa: S106 - a method name
                client_name="bench-google",
            )
        )
        secret = self.portal.call(lambda: server.clients[client_id].client_secret)
        path = self.dir / "client_secrets.json"
        document = {
            "installed": {
                "client_id": client_id,
                "client_secret": secret,
                "auth_uri": server.authorization_endpoint,
                "token_uri": server.token_endpoint,
                "redirect_uris": ["http://127.0.0.1"],
            }
        }
        _private(path, json.dumps(document))
        return path

    def _msal(self, server: Any, client_id: str) -> dict[str, str]:
        """msal's serialized token cache and HTTP cache, as a CLI using msal keeps them.

        msal accepts only an https authority, so the one it is given is never contacted: the
        discovery document sits in its ``http_cache`` (what a CLI persists between runs, as
        msal's docs show), and its token cache holds what the embedded server issued to a
        real OpenID login (access, refresh and ID token: msal keeps no account without one),
        added with msal's own ``SerializableTokenCache.add``.
        """
        import pickle

        msal: Any = importlib.import_module("msal")
        authority = f"https://127.0.0.1:{server.port}/bench"
        discovery = {
            "issuer": authority,
            "authorization_endpoint": f"{authority}/authorize",
            "token_endpoint": f"{authority}/token",
            "response_types_supported": ["code"],
        }
        http_cache: dict[Any, Any] = {}
        msal.PublicClientApplication(
            client_id,
            oidc_authority=authority,
            http_cache=http_cache,
            http_client=_DiscoveryOnly(json.dumps(discovery)),
        )
        http_cache_file = self.dir / "msal-http-cache.pickle"
        with open(http_cache_file, "wb") as f:
            pickle.dump(http_cache, f)
        http_cache_file.chmod(0o600)
        token = self.login_in_process(server, client_id, scope=f"openid {SCOPE}")
        if not token.get("id_token"):
            raise CaseFailed("the embedded server issued no ID token for scope openid")
        cache = msal.SerializableTokenCache()
        cache.add(
            {
                "client_id": client_id,
                "scope": [SCOPE],
                "token_endpoint": f"{authority}/token",
                "response": token,
            }
        )
        cache_file = self.dir / "msal-cache.json"
        _private(cache_file, cache.serialize())
        return {
            "msal_cache": str(cache_file),
            "msal_http_cache": str(http_cache_file),
            "msal_authority": authority,
            "msal_client_id": client_id,
        }

    def login_in_process(self, server: Any, client_id: str, *, scope: str) -> dict[str, Any]:
        """A real login against ``server`` on the portal's loop (untimed set-up)."""

        async def login() -> dict[str, Any]:
            from oauth_loopback import authorize
            from oauth_loopback.testing import follow_redirects

            async def browser(url: str) -> None:
                await follow_redirects(_url_from(url))

            token = await authorize(
                server.issuer, client_id=client_id, scope=scope, open_browser=browser
            )
            return dict(token)

        result: dict[str, Any] = self.portal.call(login)
        return result

    def grants(self, which: str) -> list[str]:
        server = self.server(which)
        return [t.grant_type for t in self.portal.call(lambda: server.issued_tokens)]

    # The children.

    def env(self, extra: dict[str, str]) -> dict[str, str]:
        """A clean environment: byte-code caches, private state dirs, our $BROWSER.

        No DISPLAY, WAYLAND_DISPLAY or TERM: ``webbrowser`` then probes for no installed
        browser (which would differ from machine to machine, and on a desktop spawns
        ``xdg-settings``) and registers only ``$BROWSER``.
        """
        env = dict(os.environ)
        for name in (
            "PYTHONDONTWRITEBYTECODE",
            "PYTHONPROFILEIMPORTTIME",
            "PYTHONSTARTUP",
            "DISPLAY",
            "WAYLAND_DISPLAY",
            "TERM",
            "OAUTH_LOOPBACK_CLIENT_SECRET",
        ):
            env.pop(name, None)
        env.update(
            PYTHONPYCACHEPREFIX=str(self.pycache),
            BROWSER=str(self.browser),
            BENCH_BROWSER_FIFO=str(self.fifo_path),
            XDG_STATE_HOME=str(self.dir / "state"),
            XDG_CACHE_HOME=str(self.dir / "cache"),
            XDG_CONFIG_HOME=str(self.dir / "config"),
        )
        env.update(extra)
        return env

    def wait_for_browser(self, proc: subprocess.Popen[bytes]) -> tuple[int, str]:
        """(time, line) of the opener's note on the FIFO; raises if the child ends first."""
        pidfd = os.pidfd_open(proc.pid) if hasattr(os, "pidfd_open") else None
        try:
            deadline = time.monotonic() + TIMEOUT
            data = b""
            first = 0
            while not data.endswith(b"\n"):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise CaseFailed(f"no browser was opened within {TIMEOUT:g} s")
                watch = [self.fifo] if pidfd is None else [self.fifo, pidfd]
                ready, _, _ = select.select(watch, [], [], remaining)
                if self.fifo in ready:
                    first = first or ns()
                    data += os.read(self.fifo, 65536)
                elif pidfd is not None and pidfd in ready:
                    raise CaseFailed("the process ended without opening a browser")
            return first, data.decode().strip()
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def follow(self, opened: str) -> None:
        """Play the browser: load what the opener was given, follow the redirects."""
        from oauth_loopback.testing import follow_redirects

        self.portal.call(follow_redirects, _url_from(opened))

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while os.read(self.fifo, 65536):
                pass


def _private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


class _Response:
    def __init__(self, text: str) -> None:
        self.status_code = 200
        self.text = text
        self.headers: dict[str, str] = {"content-type": "application/json"}

    def raise_for_status(self) -> None:
        return None


class _DiscoveryOnly:
    """msal's ``http_client`` for the set-up only: answers its one discovery GET."""

    def __init__(self, document: str) -> None:
        self._document = document

    def get(self, url: str, **_: Any) -> _Response:
        if not url.endswith("/.well-known/openid-configuration"):
            raise CaseFailed(f"msal set-up asked for {url!r}")
        return _Response(self._document)

    def post(self, url: str, **_: Any) -> _Response:
        raise CaseFailed(f"msal set-up tried to POST to {url!r}")

    def close(self) -> None:
        return None


_URL_IN_FILE = re.compile(r"http://127\.0\.0\.1:\d+/[^\s\"'<>]*")


def _url_from(opened: str) -> str:
    """The authorization URL, whether the opener got it or a file that leads to it."""
    if opened.startswith("http://"):
        return opened
    path = Path(opened.removeprefix("file://"))
    match = _URL_IN_FILE.search(path.read_text(encoding="utf-8"))
    if match is None:
        raise CaseFailed("the browser was handed a file with no authorization URL in it")
    return html.unescape(match.group(0))


# --- sampling -------------------------------------------------------------------------------


def sample(h: Harness, case: Case) -> int:
    """One process of ``case``; returns nanoseconds until its moment (see the module)."""
    if case.prepare is not None:
        case.prepare(h, case)
    argv, extra = case.command(h)
    grants_before = len(h.grants(case.server)) if case.grants is not None else 0
    h.drain()
    t0 = ns()
    proc = subprocess.Popen(
        argv,
        env=h.env(extra),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        moment = 0
        if case.until == "browser":
            moment, opened = h.wait_for_browser(proc)
            h.follow(opened)
        out, err = proc.communicate(timeout=TIMEOUT)
        if not moment:
            moment = ns()
    except BaseException as exc:
        proc.kill()
        out, err = proc.communicate()
        if isinstance(exc, CaseFailed):
            raise CaseFailed(f"{case.label}: {exc}\n{_tail(err)}") from exc
        raise
    if proc.returncode != 0:
        raise CaseFailed(f"{case.label} exited with {proc.returncode}:\n{_tail(err)}")
    if case.check is not None and not case.check(out.decode(errors="replace")):
        raise CaseFailed(f"{case.label} printed no token:\n{_tail(err)}")
    if case.grants is not None:
        seen = tuple(h.grants(case.server)[grants_before:])
        if seen != case.grants:
            raise CaseFailed(f"{case.label}: the server issued {seen}, expected {case.grants}")
    return moment - t0


def _tail(data: bytes, lines: int = 12) -> str:
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def browser_script_startup(h: Harness, runs: int) -> list[int]:
    """How long the ``$BROWSER`` script itself takes to start and write its line."""
    samples = []
    for round_ in range(runs + 1):
        h.drain()
        t0 = ns()
        proc = subprocess.Popen([str(h.browser), "http://127.0.0.1:1/x"], env=h.env({}))
        moment, _ = h.wait_for_browser(proc)
        proc.wait(timeout=TIMEOUT)
        if round_:
            samples.append(moment - t0)
    return samples


def measure(
    runs: int, *, warmup_rounds: int = 1, quick: bool = False, cases: list[Case] | None = None
) -> dict[str, Any]:
    """Every available case, ``runs`` interleaved rounds after ``warmup_rounds`` discarded.

    ``quick``: only the cases marked ``quick`` (one per contender and moment).
    """
    cases = CASES if cases is None else cases
    if quick:
        cases = [case for case in cases if case.quick]
    results: dict[str, Any] = {"cases": {}}
    runnable: list[Case] = []
    for case in cases:
        why = case.unavailable()
        entry: dict[str, Any] = {
            "label": case.label,
            "group": case.group,
            "contender": case.contender,
            "ours": case.ours,
            "until": case.until,
        }
        if why is not None:
            entry["skipped"] = why
        else:
            runnable.append(case)
        results["cases"][case.key] = entry
    samples: dict[str, list[int]] = {case.key: [] for case in runnable}
    with contextlib.ExitStack() as stack:
        h = Harness(stack)
        h.plan("main")
        for round_ in range(warmup_rounds + runs):
            for case in runnable:
                elapsed = sample(h, case)
                if round_ >= warmup_rounds:  # warm-up: the page cache and the .pyc files
                    samples[case.key].append(elapsed)
        results["browser_script"] = summarise(browser_script_startup(h, max(runs, 3)))
    for key, values in samples.items():
        results["cases"][key]["summary"] = summarise(values)
    return results


# --- the cases ------------------------------------------------------------------------------

Command = Callable[[Harness], tuple[list[str], dict[str, str]]]


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("oauth-loopback")
    return [str(script)] if script.exists() else [sys.executable, "-m", "oauth_loopback"]


def _child(mode: str, *flags: str, server: str = "main") -> Command:
    def command(h: Harness) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, str(CHILD), mode, str(h.plan(server)), *flags], {}

    return command


def _login(*, warm: bool) -> Command:
    def command(h: Harness) -> tuple[list[str], dict[str, str]]:
        plan = h.plan_data("main")
        argv = [*_cli(), "login", plan["issuer"], "--scope", SCOPE, "--json"]
        argv += ["--store", plan["store"]]
        if warm:
            argv += [f"--client-id={plan['client_id']}", "--metadata", plan["metadata_file"]]
        return argv, {}

    return command


def _token_cli(server: str) -> Command:
    def command(h: Harness) -> tuple[list[str], dict[str, str]]:
        plan = h.plan_data(server)
        argv = [*_cli(), "token", plan["issuer"], "--scope", SCOPE]
        return argv + [f"--client-id={plan['client_id']}", "--store", plan["store"]], {}

    return command


def _missing(module: str, extra: str = "bench") -> Callable[[], str | None]:
    def unavailable() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"not installed (pip install 'oauth-loopback[{extra}]')"
        return None

    return unavailable


def _ours_lacks(name: str) -> Callable[[], str | None]:
    """Skipped until this oauth_loopback has ``name`` (``sync.x``; ``cli:x`` a sub-command).

    The hook for what is still being written: a case for it can be registered before it
    lands, and is measured from the first run in which it exists.
    """

    def unavailable() -> str | None:
        if name.startswith("cli:"):
            from oauth_loopback._cli import _parser

            command = name.removeprefix("cli:")
            actions = [a for a in _parser()._actions if getattr(a, "choices", None)]
            if any(command in (a.choices or ()) for a in actions):
                return None
        else:
            module_name, _, attr = name.rpartition(".")
            suffix = f".{module_name}" if module_name else ""
            module = importlib.import_module(f"oauth_loopback{suffix}")
            if attr in getattr(module, "__all__", ()):
                return None
        return f"{name.removeprefix('cli:')} is not in this oauth_loopback yet"

    return unavailable


def _clear_store(h: Harness, case: Case) -> None:
    """Cold cases: nothing stored (``login`` saves its login; ``get_token`` reads the store)."""
    shutil.rmtree(h.store(case.server), ignore_errors=True)


def _from_template(*, dynamic: bool, keep_tokens: bool) -> Callable[[Harness, Case], None]:
    """Put back a store primed once by a real login (in this process, untimed).

    ``keep_tokens=False`` leaves only what a store keeps between logins (the registration and
    the server's metadata): the warm start of an interactive login.
    """

    def prepare(h: Harness, case: Case) -> None:
        store = h.store(case.server)
        template = h.dir / f"template-{case.server}-{dynamic}-{keep_tokens}"
        if not template.exists():
            shutil.rmtree(store, ignore_errors=True)
            h.prime(case.server, dynamic=dynamic, keep_tokens=keep_tokens)
            shutil.copytree(store, template)
        shutil.rmtree(store, ignore_errors=True)
        shutil.copytree(template, store)

    return prepare


def _fresh_login(h: Harness, case: Case) -> None:
    """Refreshed cases: a new login every time (1 s tokens), so its refresh token is unused
    (the embedded server revokes a refresh token once it has been rotated)."""
    shutil.rmtree(h.store(case.server), ignore_errors=True)
    h.prime(case.server, dynamic=False, keep_tokens=True)


_GOOGLE_ENV = {"OAUTHLIB_INSECURE_TRANSPORT": "1"}  # oauthlib's documented switch for http


def _google_command(h: Harness) -> tuple[list[str], dict[str, str]]:
    argv, _ = _child("google")(h)
    return argv, _GOOGLE_ENV


MSAL_HTTPS_ONLY = (
    "msal accepts no http authority: msal.authority.canonicalize() requires https for the "
    "authority (oidc_authority= too) and for the token endpoint, so it cannot be pointed at "
    "an http loopback server without patching it"
)


def _msal_https_only() -> str | None:
    return _missing("msal")() or MSAL_HTTPS_ONLY


def _no_command(h: Harness) -> tuple[list[str], dict[str, str]]:
    raise CaseFailed("this case is never run (it is always skipped)")


def _stdout_has(text: str) -> Callable[[str], bool]:
    return lambda out: text in out


def _one_token_line(out: str) -> bool:
    return len(out.split()) == 1


_TOKEN_LINE = _stdout_has("token ")
_WARM_STORE = _from_template(dynamic=True, keep_tokens=False)
_STORED_TEMPLATE = _from_template(dynamic=False, keep_tokens=True)


def _reference(key: str, label: str, code: str) -> Case:
    def command(h: Harness) -> tuple[list[str], dict[str, str]]:
        return [sys.executable, "-c", code], {}

    return Case(key, label, "reference", "python", command, check=None, quick=True)


def _ours(
    key: str,
    label: str,
    group: Group,
    command: Command,
    *,
    prepare: Callable[[Harness, Case], None],
    needs: str | None = None,
    check: Callable[[str], bool] | None = _TOKEN_LINE,
    quick: bool = False,
) -> Case:
    """One of ours; ``needs``: the name it waits for (``get_token``, ``sync.x``, ``cli:x``)."""
    return Case(
        key,
        label,
        group,
        "oauth-loopback",
        command,
        until="browser" if group == "browser" else "exit",
        unavailable=_ours_lacks(needs) if needs else (lambda: None),
        prepare=prepare,
        check=check,
        grants={"browser": None, "stored": (), "refreshed": ("refresh_token",)}[group],
        server="refresh" if group == "refreshed" else "main",
        ours=True,
        quick=quick,
    )


CASES: list[Case] = [
    _reference("pass", "`python -c pass`", "pass"),
    _reference("anyio-h11", '`python -c "import anyio, h11"`', "import anyio, h11"),
    # Time to browser. Cold: discovery and registration; warm: what a store keeps.
    _ours(
        "login-cold",
        "`oauth-loopback login` (cold)",
        "browser",
        _login(warm=False),
        prepare=_clear_store,
        check=_stdout_has('"access_token"'),
        quick=True,
    ),
    _ours(
        "login-warm",
        "`oauth-loopback login --client-id --metadata` (warm)",
        "browser",
        _login(warm=True),
        prepare=_clear_store,
        check=_stdout_has('"access_token"'),
    ),
    _ours(
        "authorize-cold",
        "`authorize()` (cold)",
        "browser",
        _child("authorize"),
        prepare=_clear_store,
    ),
    _ours(
        "authorize-warm",
        "`authorize(client_id=, metadata=)` (warm)",
        "browser",
        _child("authorize", "warm"),
        prepare=_clear_store,
        quick=True,
    ),
    # The same, as for a user who has not installed trio: httpcore2 (httpx2's transport)
    # imports trio at import when it can (httpcore2/_synchronization.py), which is most of
    # what the login still pays before its browser. The child blocks the import
    # (sys.modules["trio"] = None: ImportError, as when it is absent) before anything loads.
    _ours(
        "authorize-warm-notrio",
        "`authorize(client_id=, metadata=)` (warm), trio not installed",
        "browser",
        _child("authorize", "warm", "no-trio"),
        prepare=_clear_store,
    ),
    _ours(
        "sync-authorize-cold",
        "`sync.authorize()` (cold)",
        "browser",
        _child("sync-authorize"),
        prepare=_clear_store,
    ),
    _ours(
        "sync-authorize-warm",
        "`sync.authorize(client_id=, metadata=)` (warm)",
        "browser",
        _child("sync-authorize", "warm"),
        prepare=_clear_store,
    ),
    _ours(
        "get-token-cold",
        "`get_token()`, empty store (cold)",
        "browser",
        _child("get-token", "dynamic"),
        prepare=_clear_store,
        needs="get_token",
    ),
    _ours(
        "get-token-warm",
        "`get_token()`, stored registration (warm)",
        "browser",
        _child("get-token", "dynamic"),
        prepare=_WARM_STORE,
        needs="get_token",
        quick=True,
    ),
    _ours(
        "get-token-warm-notrio",
        "`get_token()`, stored registration (warm), trio not installed",
        "browser",
        _child("get-token", "dynamic", "no-trio"),
        prepare=_WARM_STORE,
        needs="get_token",
    ),
    _ours(
        "sync-get-token-cold",
        "`sync.get_token()`, empty store (cold)",
        "browser",
        _child("sync-get-token", "dynamic"),
        prepare=_clear_store,
        needs="sync.get_token",
    ),
    _ours(
        "sync-get-token-warm",
        "`sync.get_token()`, stored registration (warm)",
        "browser",
        _child("sync-get-token", "dynamic"),
        prepare=_WARM_STORE,
        needs="sync.get_token",
    ),
    Case(
        "google",
        "google-auth-oauthlib `InstalledAppFlow.run_local_server`",
        "browser",
        "google-auth-oauthlib",
        _google_command,
        until="browser",
        unavailable=_missing("google_auth_oauthlib"),
        quick=True,
    ),
    Case(
        "msal-interactive",
        "msal `acquire_token_interactive`",
        "browser",
        "msal",
        _no_command,
        until="browser",
        unavailable=_msal_https_only,
        quick=True,
    ),
    # Time to a stored, valid token.
    _ours(
        "token-cli-stored",
        "`oauth-loopback token` (stored)",
        "stored",
        _token_cli("main"),
        prepare=_STORED_TEMPLATE,
        needs="cli:token",
        check=_one_token_line,
        quick=True,
    ),
    _ours(
        "get-token-stored",
        "`get_token()` (stored)",
        "stored",
        _child("get-token"),
        prepare=_STORED_TEMPLATE,
        needs="get_token",
        quick=True,
    ),
    _ours(
        "sync-get-token-stored",
        "`sync.get_token()` (stored)",
        "stored",
        _child("sync-get-token"),
        prepare=_STORED_TEMPLATE,
        needs="sync.get_token",
    ),
    Case(
        "msal-silent",
        "msal `acquire_token_silent` (token cache on disk)",
        "stored",
        "msal",
        _child("msal-silent"),
        unavailable=_missing("msal"),
        quick=True,
    ),
    # Time to a refreshed token (the stored access token has expired).
    _ours(
        "token-cli-refreshed",
        "`oauth-loopback token` (refreshed)",
        "refreshed",
        _token_cli("refresh"),
        prepare=_fresh_login,
        needs="cli:token",
        check=_one_token_line,
    ),
    _ours(
        "get-token-refreshed",
        "`get_token()` (refreshed)",
        "refreshed",
        _child("get-token", server="refresh"),
        prepare=_fresh_login,
        needs="get_token",
        quick=True,
    ),
    _ours(
        "sync-get-token-refreshed",
        "`sync.get_token()` (refreshed)",
        "refreshed",
        _child("sync-get-token", server="refresh"),
        prepare=_fresh_login,
        needs="sync.get_token",
    ),
    Case(
        "msal-refreshed",
        "msal `acquire_token_silent` (refresh)",
        "refreshed",
        "msal",
        _no_command,
        unavailable=_msal_https_only,
        quick=True,
    ),
]


def register(case: Case) -> None:
    """Add a contender (replacing one with the same key)."""
    CASES[:] = [c for c in CASES if c.key != case.key] + [case]


# --- reading the results --------------------------------------------------------------------


def fastest_peer(results: dict[str, Any], group: str) -> tuple[str, Summary] | None:
    """The peer with the lowest median in ``group`` (None when no peer was measured)."""
    measured = [
        (entry["contender"], entry["summary"])
        for entry in results["cases"].values()
        if entry["group"] == group and not entry["ours"] and "summary" in entry
    ]
    return min(measured, key=lambda m: m[1]["median_us"]) if measured else None


def iter_rows(results: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    order = ("reference", "browser", "stored", "refreshed")
    for group in order:
        for key, entry in results["cases"].items():
            if entry["group"] == group:
                yield key, entry
