"""The benchmark suite runs end to end with tiny iteration counts (no timing is asserted)."""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import json
import math
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from oauth_loopback import open_receiver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import felt, floors, longlived, peers, receiver, run, startup
from benchmarks._client import callback_request, connect_and_send, read_all, status_of
from benchmarks._stats import Summary, summarise

TINY = run.Sizes(
    bind=3,
    dispatch=3,
    scale=2,
    pending=(1, 5, 50),
    burst=12,
    memory=100,
    startup_runs=1,
    peer_bind=2,
    peer_dispatch=2,
    fastmcp=1,
    msal_public=0,
    felt_runs=1,
    # The smallest long-lived run that still has two readings past the finished-state
    # memory's turnover (1,024 logins) in each traced window.
    long_total=2300,
    long_window=1150,
    long_step=50,
    rounds=1,
    warmup=1,
    felt_warmup=0,
    long_warmup=1025,
)


def _sane(summary: Summary, n: int) -> None:
    assert summary["n"] == n
    assert 0 < summary["min_us"] <= summary["median_us"] <= summary["p90_us"] <= summary["p99_us"]
    assert summary["p99_us"] < 60e6  # a sample longer than a minute is a broken clock or hang


def test_summarise_orders_quantiles_from_the_samples() -> None:
    """summarise() reports observed samples in µs: min <= median <= p90 <= p99."""
    summary = summarise([5000, 1000, 3000, 2000, 4000])
    assert summary == {
        "n": 5,
        "median_us": 3.0,
        "p90_us": 5.0,
        "p99_us": 5.0,
        "min_us": 1.0,
    }
    with pytest.raises(ValueError, match="no samples"):
        summarise([])


def test_syscall_floors_measure_every_iteration() -> None:
    """The raw-socket floors give one positive sample per iteration, hand-off before the page."""
    assert len(floors.syscall_bind(3)) == 3
    wake, full = floors.syscall_dispatch(3)
    assert len(wake) == len(full) == 3
    assert all(0 < w <= f for w, f in zip(wake, full, strict=True))


class TestOnEachBackend:
    pytestmark = pytest.mark.anyio

    async def test_bind_and_dispatch_sample_every_iteration(self) -> None:
        """Receiver bind, dispatch (with other logins pending) and the anyio+h11 floor all sample."""
        assert all(s > 0 for s in await receiver.bind(3))
        assert all(s > 0 for s in await receiver.bind_config(3))
        wake, full = await receiver.dispatch(3, pending=20)
        assert len(wake) == len(full) == 3
        assert all(0 < s for s in wake)
        floor_wake, floor_full = await floors.framework_dispatch(3)
        assert len(floor_wake) == len(floor_full) == 3

    async def test_memory_per_pending_login_is_measured(self) -> None:
        """tracemalloc attributes a plausible number of bytes to each pending login."""
        figures = await receiver.memory(200)
        assert figures["logins"] == 200
        assert 50 < figures["bytes_per_pending"] < 100_000
        assert figures["bytes_per_pending_with_parked_wait"] > figures["bytes_per_pending"]

    async def test_burst_resolves_every_login_with_its_own_code(self) -> None:
        """A burst of concurrent callbacks wakes each login with exactly its own code."""
        figures = await receiver.burst(12)
        assert figures["callbacks"] == figures["resolved"] == figures["correct"] == 12
        assert figures["pages_200"] == 12
        assert figures["all_resolved_ms"] > 0


# The whole suite: two backends, a long-lived receiver of 2,300 logins each, and a round of
# whole processes (time to browser, stored token). About 20 s on a quiet 2-CPU machine.
@pytest.mark.slow
@pytest.mark.timeout(300)
def test_run_suite_produces_the_table_and_json(tmp_path: Path) -> None:
    """One tiny run on both backends yields every figure, the goals, Markdown and JSON."""
    results = run.run_suite(TINY, ["asyncio", "trio"], with_startup=True, with_peers=True)
    for backend in ("asyncio", "trio"):
        fig = results["backends"][backend]
        _sane(fig["bind"], 3)
        _sane(fig["bind_config"], 3)
        long = fig["long_lived"]
        assert long["completed"] == TINY.long_total
        assert long["wrong"] == 0
        assert long["finished_states_max"] == longlived.FINISHED_CAP
        assert len(long["first_window"]) == len(long["last_window"]) == 23
        assert all(c["traced_bytes"] for c in long["last_window"])
        assert all(c["traced_bytes"] is None for c in long["between"])
        for key in ("dispatch_wake", "dispatch_full", "floor_wake", "floor_full"):
            _sane(fig[key], 3)
        for pending in (5, 50):
            _sane(fig[f"pending_{pending}"], 2)
        assert fig["burst"]["correct"] == 12
    _sane(results["syscall_floor"]["bind"], 6)
    assert set(results["startup"]) == set(startup.COMMANDS)
    assert results["startup_heavy_imports"] == []
    assert set(results["peers"]) == set(peers.PEERS)
    for name, peer in results["peers"].items():
        # An installed peer must be measured, a missing one must say so: never a silent pass.
        if peers.installed(name):
            expected = TINY.fastmcp if name == "fastmcp" else TINY.peer_bind
            assert "skipped" not in peer, peer
            assert peer["bind"]["n"] == expected
        else:
            assert "skipped" in peer
    _check_felt(results["felt"])
    names = {(g["goal"], g["backend"]) for g in results["goals"]}
    assert ("bind median / syscall floor", "trio") in names
    assert ("bind through a config / syscall floor", "asyncio") in names
    assert ("long-lived receiver: finished states remembered", "trio") in names
    assert any(
        g["goal"].startswith("time to browser: `oauth-loopback login`") for g in results["goals"]
    )
    assert ("import oauth_loopback / import anyio, h11", "") in names
    assert all(isinstance(g["holds"], bool) for g in results["goals"])
    table = run.markdown(results)
    assert "| **oauth-loopback bind** | asyncio |" in table
    assert "| **oauth-loopback dispatch → wait() returns** | trio |" in table
    assert "| **oauth-loopback bind through a config** | asyncio |" in table
    assert "| long-lived receiver |" in table
    assert "| time to browser (process start → opener invoked) |" in table
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(results))
    loaded: dict[str, Any] = json.loads(path.read_text())
    assert loaded["meta"]["sizes"]["bind"] == 3
    assert not math.isnan(loaded["backends"]["trio"]["memory"]["bytes_per_pending"])


def _check_felt(figures: dict[str, Any]) -> None:
    """Every process figure is measured once, or says why it is not; a peer that is installed
    must be measured, a missing one must say it is not installed."""
    cases = figures["cases"]
    assert set(cases) == {case.key for case in felt.CASES}
    for case in felt.CASES:
        entry = cases[case.key]
        why = case.unavailable()
        if why is None:
            assert "skipped" not in entry, entry
            _sane(entry["summary"], TINY.felt_runs)
        else:
            assert entry["skipped"] == why
            assert "summary" not in entry
    for key in ("pass", "anyio-h11", "login-cold", "authorize-warm", "sync-authorize-cold"):
        assert "summary" in cases[key], key
    for key, module in (("google", "google_auth_oauthlib"), ("msal-silent", "msal")):
        if importlib.util.find_spec(module) is not None:
            assert "summary" in cases[key], key
        else:
            assert "not installed" in cases[key]["skipped"]
    # msal takes only https authorities: said so, never a silent pass.
    assert "https" in cases["msal-interactive"]["skipped"] or (
        "not installed" in cases["msal-interactive"]["skipped"]
    )
    _sane(figures["browser_script"], 3)


def test_a_registered_contender_is_measured() -> None:
    """A new Case is all a contender needs: it is run, checked and summarised."""
    case = felt.Case(
        "echo",
        "prints a token line",
        "stored",
        "python",
        lambda h: ([sys.executable, "-c", "print('token Bearer')"], {}),
    )
    results = felt.measure(2, warmup_rounds=0, cases=[case])
    _sane(results["cases"]["echo"]["summary"], 2)
    assert felt.measure(1, warmup_rounds=0, quick=True, cases=[case])["cases"] == {}
    broken = dataclasses.replace(case, command=lambda h: ([sys.executable, "-c", "pass"], {}))
    with pytest.raises(felt.CaseFailed, match="printed no token"):
        felt.measure(1, warmup_rounds=0, cases=[broken])


def test_the_authorization_url_is_found_in_a_file_handed_to_the_browser(tmp_path: Path) -> None:
    """A launcher that hands the browser an HTML file instead of the URL is still followed."""
    url = "http://127.0.0.1:8123/authorize?client_id=c&amp;state=s"
    page = tmp_path / "login.html"
    page.write_text(f'<meta http-equiv="refresh" content="0;url={url}"><a href="{url}">go</a>')
    expected = "http://127.0.0.1:8123/authorize?client_id=c&state=s"
    assert felt._url_from(str(page)) == expected
    assert felt._url_from(f"file://{page}") == expected
    assert felt._url_from(expected) == expected


def test_long_lived_refuses_sizes_that_cannot_show_the_turnover() -> None:
    """A window too short to read past 1,024 finished states is refused, not half-measured."""
    with pytest.raises(ValueError, match="two readings past 1024"):
        anyio.run(functools.partial(longlived.long_lived, 2000, window=1000, step=100))


def test_command_line_quick_flags_parse() -> None:
    """The CLI accepts the documented flags and refuses an unknown backend."""
    with pytest.raises(SystemExit):
        run.main(["--backend", "curio"])


class TestAcceptTaskFastPath:
    """The receiver change the benchmarks drove: heads that arrive with the connection."""

    pytestmark = pytest.mark.anyio

    async def test_head_split_around_the_accept_still_delivers(self) -> None:
        """Half a head read at accept time goes to the connection task, which finishes it."""
        async with open_receiver() as recv, anyio.create_task_group() as tg:
            login = recv.expect()
            request = callback_request(recv.port, "/callback", f"code=split&state={login.state}")
            got: list[str] = []

            async def wait() -> None:
                got.append((await login.wait(timeout=10)).code)

            tg.start_soon(wait)
            await anyio.wait_all_tasks_blocked()
            # Sent before the loop runs again: the accept task reads exactly this half.
            client = connect_and_send(recv.port, request[:40])
            with client:
                await anyio.wait_all_tasks_blocked()
                assert got == []
                client.sendall(request[40:])
                with anyio.fail_after(10):
                    body = await read_all(client)
            await anyio.wait_all_tasks_blocked()
        assert got == ["split"]
        assert status_of(body) == 200

    async def test_malformed_head_with_the_connection_gets_400(self) -> None:
        """A malformed head read at accept time is answered 400 and consumes nothing."""
        async with open_receiver() as recv:
            login = recv.expect()
            client = connect_and_send(recv.port, b"NOT HTTP AT ALL\r\n\r\n")
            with client, anyio.fail_after(10):
                body = await read_all(client)
            assert status_of(body) == 400
            assert recv.pending_count == 1
            assert not login.done

    async def test_silent_connections_do_not_stop_the_receiver(self) -> None:
        """Clients that connect and leave, or stay silent, do not delay a real callback."""
        async with open_receiver() as recv:
            connect_and_send(recv.port, b"").close()
            silent = connect_and_send(recv.port, b"")
            with silent:
                login = recv.expect()
                request = callback_request(recv.port, "/callback", f"code=c1&state={login.state}")
                client = connect_and_send(recv.port, request)
                with client, anyio.fail_after(10):
                    body = await read_all(client)
                    response = await login.wait(timeout=10)
        assert status_of(body) == 200
        assert response.code == "c1"
