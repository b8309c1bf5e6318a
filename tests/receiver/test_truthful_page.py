"""The browser's page tells the truth: issuer checks at the receiver, pages held for finish().

``expect(issuer=X, require_iss=False)`` refuses a present, different ``iss`` with a 400 page
even for servers that do not advertise RFC 9207; ``expect(hold_page=...)`` holds the page of
a delivered code until ``pending.finish(ok=..., message=...)`` (bounded), on both serving
paths, without holding up anything else.
"""

from __future__ import annotations

import math

import anyio
import h11
import pytest

import oauth_loopback as ol
from oauth_loopback._receiver._receiver import PAGE_HOLD
from tests import _http

pytestmark = pytest.mark.anyio

ISSUER = "https://as.example"


async def _browse(port: int, target: str, split: bool, box: list[_http.Reply]) -> None:
    """A browser's GET: whole at once (answered on the accept path) or split (by its task)."""
    conn = h11.Connection(h11.CLIENT)
    data = (
        conn.send(
            h11.Request(
                method="GET",
                target=target,
                headers=[("Host", f"127.0.0.1:{port}"), ("Connection", "close")],
            )
        )
        or b""
    )
    data += conn.send(h11.EndOfMessage()) or b""
    async with await anyio.connect_tcp("127.0.0.1", port) as stream:
        if split:
            await stream.send(data[:7])
            # The receiver takes connections in order: once this one is answered, the first
            # is being served by its own task, with its partial head.
            assert (await _http.get(port, "/favicon.ico")).status == 404
            await stream.send(data[7:])
        else:
            await stream.send(data)
        box.append(await _http._read_reply(stream, conn))


# --- RFC 9207 at the receiver, advertised or not -------------------------------------------


@pytest.mark.parametrize("require_iss", [True, False])
async def test_a_present_different_iss_is_refused_at_the_receiver(require_iss: bool) -> None:
    """A wrong iss gets a 400 page and wakes IssuerMismatch, whether or not iss is required."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(issuer=ISSUER, require_iss=require_iss)
        reply = await _http.get(
            receiver.port, f"/callback?state={pending.state}&code=c&iss=https%3A%2F%2Fevil"
        )
        assert reply.status == 400
        assert "Signed in" not in reply.text
        with pytest.raises(ol.IssuerMismatch):
            await pending.wait(5)


async def test_a_missing_iss_is_accepted_when_not_required() -> None:
    """require_iss=False: a server that does not advertise RFC 9207 may leave iss out."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(issuer=ISSUER, require_iss=False)
        reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=c")
        assert reply.status == 200
        assert (await pending.wait(5)).iss is None


async def test_a_wrong_iss_on_an_error_response_is_a_mismatch_too() -> None:
    """An error response from another issuer is an IssuerMismatch (RFC 9207 §2.4), not a denial."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(issuer=ISSUER, require_iss=False)
        await _http.get(
            receiver.port,
            f"/callback?state={pending.state}&error=access_denied&iss=https%3A%2F%2Fx",
        )
        with pytest.raises(ol.IssuerMismatch):
            await pending.wait(5)


# --- pages held for finish() ---------------------------------------------------------------


@pytest.mark.parametrize("split", [False, True], ids=["accept-path", "connection-task"])
async def test_held_page_says_signed_in_only_after_finish_ok(split: bool) -> None:
    """The code wakes wait() at once; the browser's page waits for finish(ok=True)."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(hold_page=True)
        box: list[_http.Reply] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _browse,
                receiver.port,
                f"/callback?state={pending.state}&code=c",
                split,
                box,
            )
            assert (await pending.wait(5)).code == "c"
            await anyio.wait_all_tasks_blocked()
            assert box == []  # nothing said yet: no token has arrived
            pending.finish(ok=True)
        assert box[0].status == 200
        assert "Signed in" in box[0].text


@pytest.mark.parametrize("split", [False, True], ids=["accept-path", "connection-task"])
async def test_held_page_says_sign_in_failed_with_the_escaped_reason(split: bool) -> None:
    """finish(ok=False, message=...) gives a 400 'Sign-in failed — <reason>' page, escaped."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(hold_page=True)
        box: list[_http.Reply] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _browse,
                receiver.port,
                f"/callback?state={pending.state}&code=c",
                split,
                box,
            )
            await pending.wait(5)
            pending.finish(ok=False, message="The server said <b>invalid_grant</b>. Start again.")
        page = box[0]
        assert page.status == 400
        assert (
            "Sign-in failed \N{EM DASH} The server said &lt;b&gt;invalid_grant&lt;/b&gt;"
            in page.text
        )
        assert "Signed in" not in page.text
        assert "<script" not in page.text.lower()
        assert page.headers["cache-control"] == "no-store"


async def test_held_page_past_its_bound_says_the_app_is_finishing() -> None:
    """No finish() within the hold: 'Almost done', never 'Signed in'."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(hold_page=0.3)
        with anyio.fail_after(10):
            reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=c")
        assert reply.status == 200
        assert "Almost done" in reply.text
        assert "is finishing the sign-in" in reply.text
        assert "Signed in" not in reply.text
        pending.finish(ok=True)  # too late for the page; harmless


async def test_closing_the_receiver_answers_a_held_page_instead_of_cutting_it() -> None:
    """Leaving open_receiver() with a page held (no finish) still gets the browser a page."""
    box: list[_http.Reply] = []
    async with anyio.create_task_group() as tg:
        async with ol.open_receiver() as receiver:
            pending = receiver.expect(hold_page=30)
            tg.start_soon(
                _browse,
                receiver.port,
                f"/callback?state={pending.state}&code=c",
                False,
                box,
            )
            await pending.wait(5)
        # the receiver is closed; the held page is answered within its write grace
    assert box[0].status == 200
    assert "Almost done" in box[0].text


async def test_a_held_page_holds_up_nothing_else() -> None:
    """While one page waits for finish(), other logins on the receiver complete at once."""
    async with ol.open_receiver() as receiver:
        held = receiver.expect(hold_page=30)
        other = receiver.expect()
        box: list[_http.Reply] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                _browse,
                receiver.port,
                f"/callback?state={held.state}&code=h",
                False,
                box,
            )
            await held.wait(5)
            with anyio.fail_after(2):
                reply = await _http.get(receiver.port, f"/callback?state={other.state}&code=o")
            assert reply.status == 200
            assert (await other.wait(5)).code == "o"
            assert box == []
            held.finish(ok=True)
        assert "Signed in" in box[0].text


async def test_an_error_response_is_answered_at_once_even_when_holding() -> None:
    """Only a code waits for finish(): a denial's page is the denial, at once."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(hold_page=30)
        with anyio.fail_after(5):
            reply = await _http.get(
                receiver.port, f"/callback?state={pending.state}&error=access_denied"
            )
        assert reply.status == 400
        assert "denied" in reply.text
        with pytest.raises(ol.AuthorizationDenied):
            await pending.wait(5)


async def test_finish_counts_once() -> None:
    """The first finish() decides the page; a later one changes nothing."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect(hold_page=True)
        pending.finish(ok=False, message="first")
        pending.finish(ok=True)
        reply = await _http.get(receiver.port, f"/callback?state={pending.state}&code=c")
        assert reply.status == 400
        assert "first" in reply.text


# --- arguments --------------------------------------------------------------------------------


@pytest.mark.parametrize("hold", [0, -1, 61, math.nan, math.inf, "5"])
async def test_bad_hold_page_is_refused_and_registers_nothing(hold: object) -> None:
    """hold_page must be a bool or 0 < seconds <= 60; a refusal leaves no login behind."""
    async with ol.open_receiver() as receiver:
        with pytest.raises(ValueError, match="hold_page"):
            receiver.expect(hold_page=hold)  # type: ignore[arg-type]
        assert receiver.pending_count == 0


async def test_hold_page_true_is_the_documented_bound() -> None:
    """hold_page=True holds for PAGE_HOLD seconds (a few), False not at all."""
    async with ol.open_receiver() as receiver:
        assert receiver.expect(hold_page=True).hold_page == PAGE_HOLD == 5.0
        assert receiver.expect(hold_page=False).hold_page == 0
        assert receiver.expect(hold_page=2).hold_page == 2.0


async def test_finish_without_a_held_page_is_a_usage_error() -> None:
    """finish() on a login registered without hold_page says what to pass instead."""
    async with ol.open_receiver() as receiver:
        pending = receiver.expect()
        with pytest.raises(RuntimeError, match="hold_page=True"):
            pending.finish(ok=True)
        held = receiver.expect(hold_page=True)
        with pytest.raises(TypeError):
            held.finish(ok="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError):
            receiver.expect(require_iss="no")  # type: ignore[arg-type]
        assert receiver.pending_count == 2
