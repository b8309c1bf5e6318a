"""Start-up cost as whole processes of this interpreter, interleaved so drift hits all alike."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

from ._stats import ns

# name -> argv after the interpreter. "import anyio, h11" is the reference: the receiver
# cannot start without those two, so anything above it is ours.
COMMANDS: dict[str, list[str]] = {
    "python -c pass": ["-c", "pass"],
    "import anyio, h11": ["-c", "import anyio, h11"],
    "import oauth_loopback": ["-c", "import oauth_loopback"],
    "oauth-loopback --help": ["-m", "oauth_loopback", "--help"],
}

# Modules the receiver must not pay for at import time (the login flow and MCP layers import
# them lazily; trio only when it is the backend).
HEAVY = ("authlib", "httpx2", "httpx", "trio", "mcp", "oauth_loopback._login")


def measure(runs: int) -> dict[str, list[int]]:
    """``runs`` wall-clock samples (ns) per command, round-robin after one warm-up round.

    Every command gets byte-code caches, as an installed package has: the warm-up round writes
    them under a private ``PYTHONPYCACHEPREFIX`` (so nothing lands in the work tree, and a
    ``PYTHONDONTWRITEBYTECODE`` in the environment cannot make us compile on every run).
    """
    samples: dict[str, list[int]] = {name: [] for name in COMMANDS}
    with tempfile.TemporaryDirectory(prefix="bench-pycache-") as cache:
        env = {**os.environ, "PYTHONPYCACHEPREFIX": cache}
        for variable in ("PYTHONDONTWRITEBYTECODE", "PYTHONPROFILEIMPORTTIME", "PYTHONSTARTUP"):
            env.pop(variable, None)
        for round_ in range(runs + 1):
            for name, argv in COMMANDS.items():
                t0 = ns()
                subprocess.run(
                    [sys.executable, *argv],
                    check=True,
                    env=env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
                if round_:  # round 0 warms the page cache and writes the .pyc files
                    samples[name].append(ns() - t0)
    return samples


def heavy_imports() -> list[str]:
    """The heavy modules that ``import oauth_loopback`` pulls in (should be none)."""
    code = f"import sys, oauth_loopback; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, text=True
    ).stdout
    return out.split()
