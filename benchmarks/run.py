"""Run the benchmark suite: ``python benchmarks/run.py [--quick] [--json PATH] [--backend ...]``.

Everything is measured in this one process and run, the floors included, so the ratios compare
like with like on whatever machine runs it. Prints a Markdown table; writes JSON. See
docs/benchmarks.md for how to read it.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import sys
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from benchmarks import felt, floors, longlived, peers, receiver, startup
from benchmarks._stats import Summary, ratio, summarise

BACKENDS = ("asyncio", "trio")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Iteration counts of one run."""

    bind: int
    dispatch: int
    scale: int
    pending: tuple[int, ...]
    burst: int
    memory: int
    startup_runs: int
    peer_bind: int
    peer_dispatch: int
    fastmcp: int
    msal_public: int
    felt_runs: int = 15  # interleaved rounds of whole processes (felt.py)
    long_total: int = 100_000  # completed logins through one long-lived receiver
    long_window: int = 6000  # ... of which the first and the last this many are traced
    long_step: int = 1000  # a reading every this many logins inside a window
    rounds: int = 4  # floor and receiver alternate in this many chunks (drift hits both)
    warmup: int = 20  # iterations run and discarded first, per backend
    felt_warmup: int = 1  # discarded rounds of whole processes (they write the .pyc files)
    felt_quick: bool = False  # whole processes: only one case per contender and moment
    long_warmup: int = 1500  # untraced logins first (they fill the finished-state memory)


FULL = Sizes(
    bind=4000,
    dispatch=3000,
    scale=1500,
    pending=(1, 100, 10_000),
    burst=500,
    memory=10_000,
    startup_runs=20,
    peer_bind=2000,
    peer_dispatch=1500,
    fastmcp=150,
    msal_public=3,
)
QUICK = Sizes(
    bind=400,
    dispatch=300,
    scale=200,
    pending=(1, 100, 10_000),
    burst=500,
    memory=10_000,
    startup_runs=3,
    peer_bind=200,
    peer_dispatch=150,
    fastmcp=4,  # each is a uvicorn start and stop, ~0.25 s
    msal_public=1,
    # One timed round after the warm-up round: every contender's process runs, and --quick
    # stays under 30 s on a 2-CPU machine. Figures to quote come from the full run.
    felt_runs=1,
    felt_quick=True,
    long_total=2400,
    long_window=1200,
    long_step=60,
    long_warmup=1050,
    rounds=2,
)


def _split(total: int, rounds: int) -> list[int]:
    base, extra = divmod(max(total, rounds), rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


async def _backend_suite(sizes: Sizes, syscall: dict[str, list[int]]) -> dict[str, Any]:
    """All figures of one backend; syscall-floor samples are pooled into ``syscall``."""
    # Warm-up (discarded): imports, code paths, the allocator.
    await receiver.bind(sizes.warmup)
    await receiver.bind_config(sizes.warmup)
    await receiver.dispatch(sizes.warmup)
    await floors.framework_dispatch(sizes.warmup)
    floors.syscall_bind(sizes.warmup)
    samples: dict[str, list[int]] = {}

    def add(key: str, values: list[int]) -> None:
        samples.setdefault(key, []).extend(values)

    for bind_n, dispatch_n, scale_n in zip(
        _split(sizes.bind, sizes.rounds),
        _split(sizes.dispatch, sizes.rounds),
        _split(sizes.scale, sizes.rounds),
        strict=True,
    ):
        syscall["bind"] += floors.syscall_bind(bind_n)
        add("bind", await receiver.bind(bind_n))
        add("bind_config", await receiver.bind_config(bind_n))
        wake, full = floors.syscall_dispatch(dispatch_n)
        syscall["dispatch_wake"] += wake
        syscall["dispatch_full"] += full
        wake, full = await floors.framework_dispatch(dispatch_n)
        add("floor_wake", wake)
        add("floor_full", full)
        wake, full = await receiver.dispatch(dispatch_n)
        add("dispatch_wake", wake)
        add("dispatch_full", full)
        for pending in sizes.pending:
            if pending > 1:
                wake, _ = await receiver.dispatch(scale_n, pending=pending)
                add(f"pending_{pending}", wake)
    result: dict[str, Any] = {key: summarise(values) for key, values in samples.items()}
    result["pending_1"] = result["dispatch_wake"]
    result["memory"] = await receiver.memory(sizes.memory)
    result["burst"] = await receiver.burst(sizes.burst)
    result["long_lived"] = await longlived.long_lived(
        sizes.long_total,
        window=sizes.long_window,
        step=sizes.long_step,
        warmup=sizes.long_warmup,
    )
    return result


def _peer_suite(sizes: Sizes, backends: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in peers.PEERS:
        if not peers.installed(name):
            out[name] = {"skipped": "not installed (pip install 'oauth-loopback[bench]')"}
            continue
        if name == "google-auth-oauthlib":
            raw = peers.google(sizes.peer_bind, sizes.peer_dispatch)
        elif name == "msal":
            raw = peers.msal(sizes.peer_bind, sizes.peer_dispatch, sizes.msal_public)
        elif "asyncio" in backends:
            raw = anyio.run(peers.fastmcp, sizes.fastmcp, backend="asyncio")
        else:
            out[name] = {"skipped": "fastmcp runs on asyncio only"}
            continue
        entry: dict[str, Any] = {}
        for key, value in raw.items():
            if isinstance(value, list):
                if value:  # a figure measured zero times (smoke sizes) is left out
                    entry[key] = summarise(value)
            else:
                entry[key] = value
        out[name] = entry
    return out


def _versions() -> dict[str, str]:
    names = ["oauth-loopback", "anyio", "h11", "trio", "google-auth-oauthlib", "msal", "fastmcp"]
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_suite(
    sizes: Sizes,
    backends: list[str],
    *,
    with_startup: bool = True,
    with_peers: bool = True,
    with_felt: bool = True,
) -> dict[str, Any]:
    """Measure everything; return the JSON-ready results (see docs/benchmarks.md)."""
    syscall: dict[str, list[int]] = {"bind": [], "dispatch_wake": [], "dispatch_full": []}
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "platform": platform.platform(),
            "cpu": _cpu(),
            "cpus": os.cpu_count(),
            "versions": _versions(),
            "sizes": dataclasses.asdict(sizes),
            "gc": "cyclic GC collected then disabled inside timed sections",
        },
        "backends": {},
    }
    for backend in backends:
        results["backends"][backend] = anyio.run(_backend_suite, sizes, syscall, backend=backend)
    results["syscall_floor"] = {key: summarise(values) for key, values in syscall.items()}
    if with_startup:
        raw = startup.measure(sizes.startup_runs)
        results["startup"] = {name: summarise(values) for name, values in raw.items()}
        results["startup_heavy_imports"] = startup.heavy_imports()
    results["peers"] = _peer_suite(sizes, backends) if with_peers else {}
    if with_felt:
        results["felt"] = felt.measure(
            sizes.felt_runs, warmup_rounds=sizes.felt_warmup, quick=sizes.felt_quick
        )
    results["goals"] = goals(results)
    return results


def goals(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Issue 4's goals, each with the measured value and whether it holds."""
    out: list[dict[str, Any]] = []
    sys_floor = results["syscall_floor"]

    def goal(name: str, target: float, value: float | None, backend: str = "") -> None:
        out.append(
            {
                "goal": name,
                "backend": backend,
                "target": target,
                "value": value,
                "holds": value is not None and value <= target,
            }
        )

    for backend, fig in results["backends"].items():
        goal("bind median / syscall floor", 2.2, ratio(fig["bind"], sys_floor["bind"]), backend)
        goal(
            "bind through a config / syscall floor",
            2.2,
            ratio(fig["bind_config"], sys_floor["bind"]),
            backend,
        )
        goal(
            "dispatch median / anyio+h11 floor",
            0.9,
            ratio(fig["dispatch_wake"], fig["floor_wake"]),
            backend,
        )
        largest = max(int(k.removeprefix("pending_")) for k in fig if k.startswith("pending_"))
        goal(
            f"dispatch with {largest:,} pending / 1 pending",
            1.1,
            ratio(fig[f"pending_{largest}"], fig["pending_1"]),
            backend,
        )
        goal("bytes per pending login", 1024, fig["memory"]["bytes_per_pending"], backend)
        burst = fig["burst"]
        goal(
            "burst callbacks not resolved with their own code",
            0,
            burst["callbacks"] - burst["correct"],
            backend,
        )
        long = fig["long_lived"]
        goal(
            f"long-lived receiver: bytes kept per login ({long['completed']:,} logins)",
            16,
            long["retained_bytes_per_login"],
            backend,
        )
        goal(
            "long-lived receiver: finished states remembered",
            longlived.FINISHED_CAP,
            long["finished_states_max"],
            backend,
        )
    if "felt" in results:
        cases = results["felt"]["cases"]
        google = cases.get("google", {}).get("summary")
        anyio_h11 = cases["anyio-h11"].get("summary")
        for entry in cases.values():
            if not entry["ours"] or "summary" not in entry:
                continue
            if entry["group"] == "browser":
                goal(
                    f"time to browser: {entry['label']} / google",
                    1.0,
                    ratio(entry["summary"], google),
                )
            elif entry["group"] == "stored":
                goal(
                    f"stored token: {entry['label']} / import anyio, h11",
                    1.3,
                    ratio(entry["summary"], anyio_h11),
                )
    if "startup" in results:
        goal(
            "import oauth_loopback / import anyio, h11",
            1.2,
            ratio(
                results["startup"]["import oauth_loopback"], results["startup"]["import anyio, h11"]
            ),
        )
        goal(
            "heavy modules imported by import oauth_loopback",
            0,
            len(results["startup_heavy_imports"]),
        )
    return out


# --- Markdown -------------------------------------------------------------------------------


def _us(value: float) -> str:
    return f"{value:,.1f}" if value < 10_000 else f"{value:,.0f}"


def _x(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}×"


def _row(
    label: str, backend: str, s: Summary, sys_x: float | None, fw_x: float | None, note: str = ""
) -> str:
    cells = [label, backend, _us(s["median_us"]), _us(s["p90_us"]), _us(s["p99_us"])]
    cells += [_us(s["min_us"]), str(s["n"]), _x(sys_x), _x(fw_x), note]
    return "| " + " | ".join(cells) + " |"


def markdown(results: dict[str, Any]) -> str:
    """The results as Markdown tables."""
    meta = results["meta"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    lines = [
        f"Machine: {meta['cpu']} ({meta['cpus']} CPUs), {meta['platform']}, "
        f"{meta['implementation']} {meta['python']}; {versions}. {meta['date']}.",
        "",
        "| figure | backend | median µs | p90 µs | p99 µs | min µs | n | × syscall floor "
        "| × anyio+h11 floor | note |",
        "|---|---|--:|--:|--:|--:|--:|--:|--:|---|",
    ]
    sys_floor = results["syscall_floor"]
    lines.append(_row("syscall floor: bind + connect", "—", sys_floor["bind"], None, None))
    lines.append(
        _row("syscall floor: dispatch → hand-off", "—", sys_floor["dispatch_wake"], None, None)
    )
    lines.append(
        _row(
            "syscall floor: dispatch → whole response", "—", sys_floor["dispatch_full"], None, None
        )
    )
    for backend, fig in results["backends"].items():
        lines.append(
            _row(
                "anyio+h11 floor: dispatch → hand-off",
                backend,
                fig["floor_wake"],
                ratio(fig["floor_wake"], sys_floor["dispatch_wake"]),
                None,
            )
        )
        lines.append(
            _row(
                "anyio+h11 floor: dispatch → whole response",
                backend,
                fig["floor_full"],
                ratio(fig["floor_full"], sys_floor["dispatch_full"]),
                None,
            )
        )
    for backend, fig in results["backends"].items():
        lines.append(
            _row(
                "**oauth-loopback bind**",
                backend,
                fig["bind"],
                ratio(fig["bind"], sys_floor["bind"]),
                None,
            )
        )
        lines.append(
            _row(
                "**oauth-loopback bind through a config**",
                backend,
                fig["bind_config"],
                ratio(fig["bind_config"], sys_floor["bind"]),
                None,
                "from_mapping() + open_receiver(cfg) + expect()",
            )
        )
        lines.append(
            _row(
                "**oauth-loopback dispatch → wait() returns**",
                backend,
                fig["dispatch_wake"],
                ratio(fig["dispatch_wake"], sys_floor["dispatch_wake"]),
                ratio(fig["dispatch_wake"], fig["floor_wake"]),
            )
        )
        lines.append(
            _row(
                "oauth-loopback dispatch → whole page",
                backend,
                fig["dispatch_full"],
                ratio(fig["dispatch_full"], sys_floor["dispatch_full"]),
                ratio(fig["dispatch_full"], fig["floor_full"]),
            )
        )
        for key in sorted((k for k in fig if k.startswith("pending_")), key=lambda k: int(k[8:])):
            count = int(key[8:])
            if count == 1:
                continue
            lines.append(
                _row(
                    f"dispatch → wait(), {count:,} pending",
                    backend,
                    fig[key],
                    ratio(fig[key], sys_floor["dispatch_wake"]),
                    ratio(fig[key], fig["floor_wake"]),
                    f"{_x(ratio(fig[key], fig['pending_1']))} the 1-pending figure",
                )
            )
    for name, peer in results.get("peers", {}).items():
        if "skipped" in peer:
            lines.append(f"| {name} | — | | | | | | | | skipped: {peer['skipped']} |")
            continue
        backend = "asyncio" if name == "fastmcp" else "thread"
        fw = results["backends"].get("asyncio", next(iter(results["backends"].values())))
        tag = " (form_post)" if name == "msal" else ""
        lines.append(
            _row(
                f"{name} {peer['version']} bind",
                backend,
                peer["bind"],
                ratio(peer["bind"], sys_floor["bind"]),
                None,
            )
        )
        delay = peer.get("public_delay_s", 0.0)
        lines.append(
            _row(
                f"{name} dispatch → hand-off{tag}",
                backend,
                peer["dispatch_wake"],
                ratio(peer["dispatch_wake"], sys_floor["dispatch_wake"]),
                ratio(peer["dispatch_wake"], fw["floor_wake"]),
                f"public path adds {delay * 1000:g} ms" if delay else "public path adds nothing",
            )
        )
        if "public_path" in peer:
            lines.append(
                _row(
                    f"{name} public path: callback → get_auth_response() returns{tag}",
                    backend,
                    peer["public_path"],
                    None,
                    None,
                    "polls with time.sleep",
                )
            )
    lines.append("")
    lines.append(
        "Ratios divide medians; the anyio+h11 column uses the floor on the same backend "
        "(peers: the asyncio floor)."
    )
    if "startup" in results:
        start = results["startup"]
        ref = start["import anyio, h11"]
        lines += [
            "",
            "| start-up (whole process) | median ms | p90 ms | min ms | n | × import anyio, h11 |",
            "|---|--:|--:|--:|--:|--:|",
        ]
        for name, s in start.items():
            lines.append(
                f"| `{name}` | {s['median_us'] / 1000:.1f} | {s['p90_us'] / 1000:.1f} | "
                f"{s['min_us'] / 1000:.1f} | {s['n']} | {_x(ratio(s, ref))} |"
            )
        heavy = results["startup_heavy_imports"]
        lines.append("")
        lines.append(
            "Heavy modules pulled in by `import oauth_loopback`: "
            + (", ".join(heavy) if heavy else "none")
            + "."
        )
    lines += [
        "",
        "| backend | bytes / pending login | … with a task parked in wait() | burst: callbacks "
        "| resolved with own code | 200 pages | all resolved ms | max_connections |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for backend, fig in results["backends"].items():
        mem, burst = fig["memory"], fig["burst"]
        lines.append(
            f"| {backend} | {mem['bytes_per_pending']:.0f} | "
            f"{mem['bytes_per_pending_with_parked_wait']:.0f} | {burst['callbacks']} | "
            f"{burst['correct']} | {burst['pages_200']} | {burst['all_resolved_ms']:.1f} | "
            f"{burst['max_connections']} |"
        )
    lines += _long_lived_table(results)
    if "felt" in results:
        lines += _felt_tables(results["felt"])
    lines += [
        "",
        "| goal | backend | target | measured | holds |",
        "|---|---|--:|--:|---|",
    ]
    for g in results["goals"]:
        value = g["value"]
        shown = (
            "—" if value is None else (f"{value:.2f}" if isinstance(value, float) else str(value))
        )
        lines.append(
            f"| {g['goal']} | {g['backend'] or '—'} | {g['target']:g} | {shown} | "
            f"{'yes' if g['holds'] else '**no**'} |"
        )
    return "\n".join(lines)


def _long_lived_table(results: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "| long-lived receiver | logins completed (+ abandoned) | concurrency | logins/s "
        "| traced KiB, end of first window | … of last window | bytes kept per login "
        "| blocks kept per login | finished states (max) | wrong |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for backend, fig in results["backends"].items():
        long = fig["long_lived"]
        lines.append(
            f"| {backend} | {long['completed']:,} (+{long['abandoned']:,}) | "
            f"{long['concurrency']} | {long['logins_per_second']:,.0f} | "
            f"{long['first_window_bytes'] / 1024:.1f} | {long['last_window_bytes'] / 1024:.1f} | "
            f"{long['retained_bytes_per_login']:.2f} | {long['retained_blocks_per_login']:.4f} | "
            f"{long['finished_states_max']:,} | {long['wrong']} |"
        )
    return lines


def _ms(s: Summary) -> str:
    return f"{s['median_us'] / 1000:.1f}"


def _felt_tables(felt_results: dict[str, Any]) -> list[str]:
    cases = felt_results["cases"]
    base = cases["pass"].get("summary")
    titles = {
        "reference": "reference processes",
        "browser": "time to browser (process start → opener invoked)",
        "stored": "time to a stored, valid token (process start → exit)",
        "refreshed": "time to a refreshed token (process start → exit)",
    }
    lines: list[str] = []
    group = ""
    for _key, entry in felt.iter_rows(felt_results):
        if entry["group"] != group:
            group = entry["group"]
            fastest = felt.fastest_peer(felt_results, group)
            peer = f"× {fastest[0]}" if fastest else "× fastest peer"
            lines += [
                "",
                f"| {titles[group]} | median ms | p90 ms | min ms | n | {peer} "
                "| × `python -c pass` |",
                "|---|--:|--:|--:|--:|--:|--:|",
            ]
        label = f"**{entry['label']}**" if entry["ours"] else entry["label"]
        if "skipped" in entry:
            lines.append(f"| {label} | | | | | | skipped: {entry['skipped']} |")
            continue
        s = entry["summary"]
        vs_peer = ratio(s, fastest[1]) if fastest and group != "reference" else None
        lines.append(
            f"| {label} | {_ms(s)} | {s['p90_us'] / 1000:.1f} | {s['min_us'] / 1000:.1f} | "
            f"{s['n']} | {_x(vs_peer)} | {_x(ratio(s, base))} |"
        )
    script = felt_results.get("browser_script")
    if script:
        lines += [
            "",
            f"The `$BROWSER` script that `oauth-loopback login` is given takes {_ms(script)} ms "
            "(median) to start and record the moment; that is inside the `login` rows, while "
            "the library rows record it in-process.",
        ]
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer iterations (about 10 s)")
    parser.add_argument("--json", metavar="PATH", type=Path, help="also write the results here")
    parser.add_argument("--backend", choices=[*BACKENDS, "all"], default="all")
    parser.add_argument("--no-peers", action="store_true", help="skip the peer receivers")
    parser.add_argument("--no-startup", action="store_true", help="skip the start-up processes")
    parser.add_argument(
        "--no-felt", action="store_true", help="skip time to browser / to a token (processes)"
    )
    args = parser.parse_args(argv)
    backends = list(BACKENDS) if args.backend == "all" else [args.backend]
    if "trio" in backends and importlib.util.find_spec("trio") is None:
        print("trio is not installed; measuring asyncio only", file=sys.stderr)
        backends.remove("trio")
    results = run_suite(
        QUICK if args.quick else FULL,
        backends,
        with_startup=not args.no_startup,
        with_peers=not args.no_peers,
        with_felt=not args.no_felt,
    )
    print(markdown(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
        print(f"\nJSON written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
