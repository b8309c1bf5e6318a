"""The stores' loggers: records as logging.getLogger(name) gives them, once logging is in use."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from oauth_loopback._store import FileTokenStore, LoginKey
from oauth_loopback._store._logs import LazyLogger

from ._helpers import ISSUER, sample_login

pytestmark = pytest.mark.anyio


async def test_store_debug_records_reach_configured_logging(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """With logging configured, a load logs its DEBUG line under the store module's logger,
    attributed to the store's own function, never to the lazy logger."""
    store = FileTokenStore(tmp_path)
    login = sample_login()
    await store.save(login)
    with caplog.at_level(logging.DEBUG, logger="oauth_loopback"):
        await store.load(LoginKey(login.issuer, login.resource))
    (record,) = [r for r in caplog.records if r.getMessage().startswith("Loaded the login")]
    assert record.name == "oauth_loopback._store._file_store"
    assert record.levelno == logging.DEBUG
    assert record.funcName == "_load_sync"
    assert record.pathname.endswith("_file_store.py")
    assert ISSUER in record.getMessage()


def test_info_goes_to_the_named_logger(caplog: pytest.LogCaptureFixture) -> None:
    """info() is logging.getLogger(name).info() with the same %-style arguments."""
    with caplog.at_level(logging.INFO, logger="oauth_loopback.test"):
        LazyLogger("oauth_loopback.test").info("refreshed %s in %d ms", "https://as", 12)
    (record,) = caplog.records
    assert (record.name, record.getMessage()) == (
        "oauth_loopback.test",
        "refreshed https://as in 12 ms",
    )
    assert record.funcName == "test_info_goes_to_the_named_logger"


def test_nothing_is_logged_or_imported_before_logging_is() -> None:
    """In a process that never imported logging, debug() and info() import nothing; logging
    imported (and configured) later receives what is logged from then on."""
    probe = textwrap.dedent(
        """
        import sys
        from oauth_loopback._store._logs import LazyLogger
        log = LazyLogger("oauth_loopback.probe")
        log.debug("before %s", 1)
        log.info("before %s", 2)
        print("logging" in sys.modules)
        import logging
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(message)s")
        log.debug("after %s", 3)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["False", "oauth_loopback.probe after 3"]
