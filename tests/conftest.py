"""Shared fixtures: every async test runs on asyncio and on trio."""

from __future__ import annotations

import pytest

# The oidc-provider peer's fixtures (oidc_peers, oidc_peer_runtime), for every test module.
pytest_plugins = ["tests._oidc_provider"]


@pytest.fixture(
    params=[
        pytest.param(("asyncio", {"debug": True}), id="asyncio"),
        pytest.param(("trio", {}), id="trio"),
    ]
)
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    """Pin the backends explicitly (anyio's default set changed across versions)."""
    return request.param  # type: ignore[no-any-return]
