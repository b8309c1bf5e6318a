"""`oauth-loopback token` read without argparse: the same arguments argparse reads, or none.

``_stored.token_request`` lets the stored-token path skip argparse; it must never read an
argument list differently from argparse. Either it declines (None: argparse parses, with its
help and its errors) or it gives exactly argparse's namespace.
"""

from __future__ import annotations

import contextlib
import io

import pytest
from hypothesis import given
from hypothesis import strategies as st

from oauth_loopback._cli import _parser
from oauth_loopback._cli._stored import token_request


def _argparse(argv: list[str]) -> dict[str, object] | None:
    """argparse's namespace for ``argv``, or None when it refuses it (or prints help)."""
    with contextlib.redirect_stderr(io.StringIO()), contextlib.redirect_stdout(io.StringIO()):
        try:
            return vars(_parser().parse_args(argv))
        except SystemExit:
            return None


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["token", "https://as.example"], id="issuer"),
        pytest.param(["token", "https://as", "--scope", "read write"], id="scope-after"),
        pytest.param(["token", "--scope", "read", "https://as"], id="scope-before"),
        pytest.param(["token", "https://as", "--client-id=-starts-with-dash"], id="equals-dash"),
        pytest.param(["token", "https://as", "--scope="], id="empty-value"),
        pytest.param(["token", "https://as", "--scope=a=b"], id="equals-in-value"),
        pytest.param(["token", "https://as", "--scope", "a", "--scope", "b"], id="last-wins"),
        pytest.param(["token", "--resource", "https://api", "--store", "/s"], id="no-issuer"),
        pytest.param(["token", ""], id="empty-issuer"),
        pytest.param(["token"], id="nothing"),
    ],
)
def test_plain_shapes_are_read_as_argparse_reads_them(argv: list[str]) -> None:
    """The shapes scripts write are read without argparse, to argparse's namespace."""
    request = token_request(argv)
    assert request is not None
    assert vars(request) == _argparse(argv)


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["token", "--help"], id="help"),
        pytest.param(["token", "https://as", "--sc", "read"], id="abbreviation"),
        pytest.param(["token", "https://as", "--client-id", "-dash"], id="value-like-a-flag"),
        pytest.param(["token", "https://as", "--scope"], id="missing-value"),
        pytest.param(["token", "https://as", "https://other"], id="two-issuers"),
        pytest.param(["token", "https://as", "--bogus"], id="unknown-option"),
        pytest.param(["--backend", "trio", "token", "https://as"], id="global-option"),
        pytest.param(["token", "--", "https://as"], id="double-dash"),
        pytest.param(["status"], id="another-command"),
        pytest.param([], id="no-command"),
    ],
)
def test_everything_else_is_left_to_argparse(argv: list[str]) -> None:
    """Anything but the plain shapes is declined, so argparse answers it (help, errors)."""
    assert token_request(argv) is None


_WORDS = st.sampled_from(
    [
        "https://as",
        "read",
        "",
        "-",
        "-x",
        "--",
        "--scope",
        "--scope=",
        "--scope=read",
        "--resource",
        "--resource=https://api",
        "--client-id",
        "--client-id=-a",
        "--store",
        "--store=/d",
        "--sc",
        "--help",
        "--backend",
        "token",
    ]
)


@given(st.lists(_WORDS, max_size=6))
def test_never_reads_an_argument_list_differently_from_argparse(words: list[str]) -> None:
    """For any argument list: declined, or exactly what argparse reads (never another value)."""
    argv = ["token", *words]
    request = token_request(argv)
    if request is not None:
        assert vars(request) == _argparse(argv)
