"""Profile one figure with pyinstrument: ``python benchmarks/profile.py dispatch --backend trio``.

pyinstrument is not a dependency: install it in a benchmark venv (``pip install pyinstrument``).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio

from benchmarks import floors, receiver

FIGURES: dict[str, Callable[[int], Awaitable[object]]] = {
    "bind": receiver.bind,
    "bind-config": receiver.bind_config,
    "dispatch": receiver.dispatch,
    "floor": floors.framework_dispatch,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("figure", choices=sorted(FIGURES))
    parser.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    parser.add_argument("-n", type=int, default=3000, help="iterations")
    args = parser.parse_args(argv)
    try:
        pyinstrument: Any = importlib.import_module("pyinstrument")
    except ImportError:
        print("pyinstrument is not installed: pip install pyinstrument", file=sys.stderr)
        return 2

    async def measure() -> None:
        await FIGURES[args.figure](args.n)

    profiler = pyinstrument.Profiler(interval=0.0001, async_mode="disabled")
    with profiler:
        anyio.run(measure, backend=args.backend)
    print(profiler.output_text(unicode=True, color=False, show_all=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
