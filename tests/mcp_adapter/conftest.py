"""The MCP test servers, started once per session for every module here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.mcp_adapter._harness import running_servers


@pytest.fixture(scope="session")
def servers() -> Iterator[dict[str, str]]:
    """One real MCP SDK server per mode: mode -> MCP endpoint URL."""
    with running_servers() as urls:
        yield urls
