"""The receivers users pick today, driven through their installed code (``bench`` extra).

Each peer is skipped cleanly when it is not installed. All bind port 0 on 127.0.0.1.

* google-auth-oauthlib: ``InstalledAppFlow.run_local_server`` is ``make_server(host, port,
  _RedirectWSGIApp, _ExclusiveWSGIServer, _WSGIRequestHandler)`` then one blocking
  ``handle_request()``; we run exactly those calls (the token exchange after them needs a real
  authorization server). Hand-off = ``handle_request()`` returns with ``last_request_uri``.
* msal: ``AuthCodeReceiver(port=0)``; since 2026 it accepts the response only as a
  ``response_mode=form_post`` POST, so it is driven that way (marked "form_post" in the table).
  Hand-off = the thread body of ``get_auth_response`` (``_get_auth_response``) returns with the
  response. Its public ``get_auth_response`` then polls that thread with ``time.sleep(1)``,
  measured separately as its public path.
* fastmcp: ``create_oauth_callback_server(port=0, result_ready=Event)`` (uvicorn + Starlette,
  asyncio only). uvicorn has no readiness signal, so bind polls ``server.started`` at each
  checkpoint. Hand-off = ``result_ready`` wakes the parked task. Its public
  ``OAuth.callback_handler`` then sleeps a fixed delay before returning (read from its source).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import inspect
import re
import socket
import threading
from typing import Any, TypedDict

import anyio

from ._client import (
    callback_request,
    code_for,
    connect_and_send,
    form_post_request,
    read_all,
    read_all_blocking,
    status_of,
)
from ._stats import ns, quiet_gc

PEERS = {
    "google-auth-oauthlib": "google_auth_oauthlib",
    "msal": "msal",
    "fastmcp": "fastmcp",
}


class PeerSamples(TypedDict, total=False):
    """Raw samples of one peer; keys missing when not measured."""

    version: str
    note: str
    bind: list[int]
    dispatch_wake: list[int]
    dispatch_full: list[int]
    public_path: list[int]
    public_delay_s: float


def installed(peer: str) -> bool:
    """Whether the peer's package can be imported here."""
    return importlib.util.find_spec(PEERS[peer]) is not None


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "?"


def _connect(port: int) -> None:
    client = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        client.connect(("127.0.0.1", port))
    finally:
        client.close()


def _threaded_dispatch(
    iterations: int,
    port: int,
    serve_one: Any,
    request_for: Any,
    check: Any,
) -> tuple[list[int], list[int]]:
    """Drive a blocking server: ``serve_one(i)`` runs in a thread; the client in this one."""
    handoffs: list[int] = []
    failures: list[BaseException] = []

    def serve() -> None:
        try:
            for i in range(iterations):
                serve_one(i)
                handoffs.append(ns())
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread below
            failures.append(exc)

    thread = threading.Thread(target=serve, name="peer-server", daemon=True)
    wake: list[int] = []
    full: list[int] = []
    with quiet_gc():
        thread.start()
        try:
            for i in range(iterations):
                request = request_for(i)
                t0 = ns()
                client = connect_and_send(port, request)
                with client:
                    body = read_all_blocking(client)
                t2 = ns()
                while len(handoffs) <= i and thread.is_alive():
                    thread.join(0.001)  # the page can arrive before handle_request() returns
                if failures:
                    break
                check(i, body)
                full.append(t2 - t0)
                wake.append(handoffs[i] - t0)
        finally:
            thread.join(timeout=10)
    if failures:
        raise RuntimeError("the peer's server thread failed") from failures[0]
    return wake, full


def google(bind_iterations: int, dispatch_iterations: int) -> PeerSamples:
    """google-auth-oauthlib's local server (see the module docstring)."""
    import wsgiref.simple_server

    gflow: Any = importlib.import_module("google_auth_oauthlib.flow")

    def make() -> Any:
        return wsgiref.simple_server.make_server(
            "127.0.0.1",
            0,
            gflow._RedirectWSGIApp("done"),
            server_class=gflow._ExclusiveWSGIServer,
            handler_class=gflow._WSGIRequestHandler,
        )

    bind: list[int] = []
    with quiet_gc():
        for _ in range(bind_iterations):
            t0 = ns()
            server = make()
            redirect_uri = f"http://127.0.0.1:{server.server_port}/"
            _connect(server.server_port)
            t1 = ns()
            server.server_close()
            bind.append(t1 - t0)
    if not redirect_uri.startswith("http://127.0.0.1:"):
        raise RuntimeError("google-auth-oauthlib gave an unexpected redirect URI")

    server = make()
    server.timeout = None
    app = server.get_app()
    port = server.server_port
    try:

        def check(i: int, body: bytes) -> None:
            if code_for(i) not in (app.last_request_uri or "") or status_of(body) != 200:
                raise RuntimeError("google-auth-oauthlib did not receive the code")

        wake, full = _threaded_dispatch(
            dispatch_iterations,
            port,
            lambda i: server.handle_request(),
            lambda i: callback_request(port, "/", f"code={code_for(i)}&state=s{i}"),
            check,
        )
    finally:
        server.server_close()
    return PeerSamples(
        version=_version("google-auth-oauthlib"),
        note="public path: handle_request() returns at once (no polling)",
        bind=bind,
        dispatch_wake=wake,
        dispatch_full=full,
        public_delay_s=0.0,
    )


def msal(bind_iterations: int, dispatch_iterations: int, public_runs: int) -> PeerSamples:
    """msal's AuthCodeReceiver, driven with form_post (see the module docstring)."""
    authcode: Any = importlib.import_module("msal.oauth2cli.authcode")
    bind: list[int] = []
    with quiet_gc():
        for _ in range(bind_iterations):
            t0 = ns()
            receiver = authcode.AuthCodeReceiver(port=0)
            port = receiver.get_port()
            _connect(port)
            t1 = ns()
            receiver.close()
            bind.append(t1 - t0)

    receiver = authcode.AuthCodeReceiver(port=0)
    port = receiver.get_port()
    results: list[dict[str, Any]] = [{} for _ in range(dispatch_iterations)]

    def body_for(i: int) -> str:
        return f"code={code_for(i)}&state=s{i}"

    def check(i: int, body: bytes) -> None:
        if results[i].get("code") != code_for(i) or status_of(body) != 200:
            raise RuntimeError("msal did not receive the code")

    try:
        wake, full = _threaded_dispatch(
            dispatch_iterations,
            port,
            lambda i: receiver._get_auth_response(results[i], state=f"s{i}"),
            lambda i: form_post_request(port, "/", body_for(i)),
            check,
        )
        # The public path: get_auth_response() polls its worker thread with time.sleep(1).
        public: list[int] = []
        for i in range(public_runs):
            got: list[Any] = []

            def public_call(i: int = i, got: list[Any] = got) -> None:
                got.append(receiver.get_auth_response(timeout=10, state=f"p{i}"))

            caller = threading.Thread(target=public_call, daemon=True)
            caller.start()
            t0 = ns()
            with connect_and_send(port, form_post_request(port, "/", f"code=p{i}&state=p{i}")) as c:
                read_all_blocking(c)
            caller.join(timeout=15)
            public.append(ns() - t0)
            if not got or not got[0] or got[0].get("code") != f"p{i}":
                raise RuntimeError("msal's public path did not return the code")
    finally:
        receiver.close()
    source = inspect.getsource(authcode.AuthCodeReceiver.get_auth_response)
    delay = re.search(r"time\.sleep\(([\d.]+)\)", source)
    return PeerSamples(
        version=_version("msal"),
        note="form_post POST only; public get_auth_response() polls with time.sleep",
        bind=bind,
        dispatch_wake=wake,
        dispatch_full=full,
        public_path=public,
        public_delay_s=float(delay.group(1)) if delay else float("nan"),
    )


async def fastmcp(iterations: int) -> PeerSamples:
    """fastmcp's callback server on asyncio (see the module docstring)."""
    callback: Any = importlib.import_module("fastmcp.client.oauth_callback")
    auth: Any = importlib.import_module("fastmcp.client.auth.oauth")
    bind: list[int] = []
    wake: list[int] = []
    full: list[int] = []
    for i in range(iterations):
        result = callback.OAuthCallbackResult()
        ready = anyio.Event()
        woke: list[int] = []
        async with anyio.create_task_group() as tg:
            with quiet_gc():
                t0 = ns()
                server = callback.create_oauth_callback_server(
                    port=0, host="127.0.0.1", result_container=result, result_ready=ready
                )
                tg.start_soon(server.serve)
                with anyio.fail_after(10):
                    while not server.started:
                        await anyio.lowlevel.checkpoint()
                port = server.servers[0].sockets[0].getsockname()[1]
                _connect(port)
                t1 = ns()

                async def waiter(ready: anyio.Event = ready, woke: list[int] = woke) -> None:
                    await ready.wait()
                    woke.append(ns())

                tg.start_soon(waiter)
                await anyio.wait_all_tasks_blocked()
                request = callback_request(port, "/callback", f"code={code_for(i)}&state=s{i}")
                t2 = ns()
                client = connect_and_send(port, request)
                with client:
                    body = await read_all(client)
                t3 = ns()
                with anyio.fail_after(10):
                    await ready.wait()
                    while not woke:
                        await anyio.lowlevel.checkpoint()
            if result.code != code_for(i) or status_of(body) != 200:
                raise RuntimeError("fastmcp did not receive the code")
            bind.append(t1 - t0)
            wake.append(woke[0] - t2)
            full.append(t3 - t2)
            # uvicorn's own shutdown closes its listening socket; cancelling serve() would
            # leak it (a ResourceWarning in the smoke test).
            server.should_exit = True  # serve() returns within its 0.1 s tick
    source = inspect.getsource(auth.OAuth.callback_handler)
    delay = re.search(r"anyio\.sleep\(([\d.]+)\)", source)
    return PeerSamples(
        version=_version("fastmcp"),
        note="asyncio only (uvicorn); public callback_handler() sleeps before returning",
        bind=bind,
        dispatch_wake=wake,
        dispatch_full=full,
        public_delay_s=float(delay.group(1)) if delay else float("nan"),
    )
