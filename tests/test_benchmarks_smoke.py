"""The benchmark suite runs end to end with tiny iteration counts (no timing is asserted)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from oauth_loopback import open_receiver

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import floors, peers, receiver, run, startup
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
    rounds=1,
    warmup=1,
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


def test_run_suite_produces_the_table_and_json(tmp_path: Path) -> None:
    """One tiny run on both backends yields every figure, the goals, Markdown and JSON."""
    results = run.run_suite(TINY, ["asyncio", "trio"], with_startup=True, with_peers=True)
    for backend in ("asyncio", "trio"):
        fig = results["backends"][backend]
        _sane(fig["bind"], 3)
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
    names = {(g["goal"], g["backend"]) for g in results["goals"]}
    assert ("bind median / syscall floor", "trio") in names
    assert ("import oauth_loopback / import anyio, h11", "") in names
    assert all(isinstance(g["holds"], bool) for g in results["goals"])
    table = run.markdown(results)
    assert "| **oauth-loopback bind** | asyncio |" in table
    assert "| **oauth-loopback dispatch → wait() returns** | trio |" in table
    path = tmp_path / "bench.json"
    path.write_text(json.dumps(results))
    loaded: dict[str, Any] = json.loads(path.read_text())
    assert loaded["meta"]["sizes"]["bind"] == 3
    assert not math.isnan(loaded["backends"]["trio"]["memory"]["bytes_per_pending"])


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
