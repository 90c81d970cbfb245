"""The demo page in headless Chromium on a real `fanout dev`: live updates of every surface, a dropped
socket that reconnects and resumes, two tabs of one user in sync. The first test's screenshot is docs/demo.png
(FANOUT_UPDATE_DEMO_PNG=1 rewrites it)."""

from __future__ import annotations

import json
import os
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import BrowserContext, Page, expect

from tests.conftest import Stack

ROOT = Path(__file__).resolve().parents[2]
#: The first test may install chromium with apt, which takes minutes; the tests themselves take seconds.
#: One chromium install and one demo stack per run, in one test process.
pytestmark = [pytest.mark.timeout(600), pytest.mark.xdist_group("browser")]


def _call(stack: Stack, path: str, body: dict[str, Any] | None = None, method: str = "POST") -> Any:
    """A JSON request to the demo API (or the emulator's, with ``path`` a full URL)."""
    url = path if path.startswith("http") else f"{stack.demo_url}{path}"
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data, {"Content-Type": "application/json"}, method=method)  # noqa: S310
    with urllib.request.urlopen(request, timeout=10) as answer:  # noqa: S310 - the local stack
        return json.loads(answer.read())


def _tab(browser: BrowserContext, stack: Stack, user: str) -> Page:
    """A tab of ``user`` on the demo page, once its socket is open (``hello`` answered)."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{stack.demo_url}/?user={user}")
    expect(page.get_by_test_id("status")).to_have_attribute("data-status", "open")
    assert [] == errors
    return page


def _badge(page: Page) -> int:
    return int(page.get_by_test_id("badge").get_attribute("data-count") or "0")


def _front(page: Page) -> Page:
    """The tab a user acts in is the one in front (Chromium throttles a tab behind: each click waits 2 s)."""
    page.bring_to_front()
    return page


def _js(page: Page, expression: str) -> Any:
    return page.evaluate(f"() => window.fanoutDemo.{expression}")


@pytest.fixture
def tabs(browser: BrowserContext) -> Iterator[list[Page]]:
    """The pages a test opens, closed at its end."""
    opened: list[Page] = []
    yield opened
    for page in opened:
        if not page.is_closed():
            page.close()


def test_every_surface_updates_live(
    browser: BrowserContext, demo_stack: Stack, tabs: list[Page], tmp_path: Path
) -> None:
    """Badge, RSVP and check-in counters, typing, a chat message, its delivered then read receipt, and
    presence dots (online, then offline when the other user's tab closes) update without a reload."""
    alice = _tab(browser, demo_stack, "alice")
    bob = _tab(browser, demo_stack, "bob")
    tabs += [alice, bob]
    expect(alice.get_by_test_id("presence-bob")).to_have_attribute("data-status", "online")
    expect(bob.get_by_test_id("presence-alice")).to_have_attribute("data-status", "online")

    unread, going = _badge(alice), int(bob.get_by_test_id("going").inner_text())
    _front(alice).get_by_test_id("simulate-notification").click()
    expect(alice.get_by_test_id("badge")).to_have_attribute("data-count", str(unread + 1))
    alice.get_by_test_id("simulate-rsvp").click()
    expect(bob.get_by_test_id("going")).to_have_text(str(going + 1))  # the topic reaches every watcher
    checked = int(alice.get_by_test_id("checked-in").inner_text())
    alice.get_by_test_id("simulate-checkins").click()
    expect(alice.get_by_test_id("checked-in")).to_have_text(str(checked + 60), timeout=15_000)
    assert _js(alice, "stats.checkinFrames") < 60  # conflated: far fewer frames than check-ins

    _front(bob).get_by_test_id("composer").press_sequentially("hi alice")
    expect(alice.get_by_test_id("typing")).to_have_text("bob is typing…")
    bob.get_by_test_id("composer").press("Enter")
    mine = bob.get_by_test_id("message").filter(has_text="hi alice").last
    expect(alice.get_by_test_id("message").filter(has_text="hi alice")).to_have_count(1)
    expect(alice.get_by_test_id("typing")).to_be_hidden()
    expect(mine).to_have_attribute("data-state", "delivered")  # alice's tab got it and acknowledged
    _front(alice).get_by_test_id("composer").focus()  # alice looks at the thread: read
    expect(mine).to_have_attribute("data-state", "read")
    expect(mine.get_by_test_id("receipt")).to_have_text("✓✓ read")

    alice.get_by_test_id("composer").fill("hello bob")
    alice.get_by_test_id("composer").press("Enter")
    _front(bob).get_by_test_id("composer").press_sequentially("see you")
    expect(alice.get_by_test_id("typing")).to_be_visible()
    _front(alice).get_by_test_id("composer").blur()
    # docs/demo.png is this screenshot: FANOUT_UPDATE_DEMO_PNG=1 rewrites it, other runs leave the tree clean
    shot = ROOT / "docs" / "demo.png" if os.environ.get("FANOUT_UPDATE_DEMO_PNG") else tmp_path / "demo.png"
    alice.screenshot(path=str(shot))
    assert shot.read_bytes().startswith(b"\x89PNG")

    bob.close()
    expect(alice.get_by_test_id("presence-bob")).to_have_attribute("data-status", "offline", timeout=15_000)


def test_a_dropped_socket_reconnects_and_resumes(
    browser: BrowserContext, demo_stack: Stack, tabs: list[Page]
) -> None:
    """The emulator drops the tab's socket on the post of a notification; the tab reconnects and gets
    what it missed: replayed by `resume` when the server answers it, else by the refetch of a resync."""
    alice = _tab(browser, demo_stack, "alice")
    tabs.append(alice)
    alice.get_by_test_id("simulate-notification").click()  # something to resume from: lastEventId
    alice.wait_for_function("() => window.fanoutDemo.client.lastEventId !== null")
    connects, unread = _js(alice, "client.connects"), _badge(alice)
    alice.evaluate(
        "() => { const b = window.fanoutDemo.client.backoff; b.random = () => 1; b.baseMs = 1000; }"
    )
    faults = f"{demo_stack.gateway_url}/_emulator/faults"
    _call(demo_stack, faults, {"drop": 1}, method="PUT")
    try:
        [missed] = _call(demo_stack, "/api/simulate", {"user": "alice", "what": "notification"})["eventIds"]
        alice.wait_for_function("() => window.fanoutDemo.client.status !== 'open'")
    finally:
        _call(demo_stack, faults, {"drop": 0}, method="PUT")  # before the reconnect, a second later
    expect(alice.get_by_test_id("status")).to_have_attribute("data-status", "open")
    expect(alice.get_by_test_id("badge")).to_have_attribute("data-count", str(unread + 1))
    assert _js(alice, "client.connects") > connects  # a new socket (a second drop on a slow machine is fine)
    if _js(alice, "client.canResume"):  # resume: the missed frame itself, no refetch
        alice.wait_for_function(f"() => window.fanoutDemo.stats.frames.includes({json.dumps(missed)})")
        assert 0 == _js(alice, "stats.refetches")
    else:  # a server without resume: the tab was told to resync and refetched
        assert _js(alice, "stats.refetches") >= 1
        assert missed not in _js(alice, "stats.frames")


def test_two_tabs_of_one_user_stay_in_sync(
    browser: BrowserContext, demo_stack: Stack, tabs: list[Page]
) -> None:
    """A message sent and a "mark all read" in one tab show in the user's other tab, and the tab that
    made the change gets no echo of them (its connection id is excluded)."""
    first, second = _tab(browser, demo_stack, "alice"), _tab(browser, demo_stack, "alice")
    tabs += [first, second]
    assert _js(first, "client.connectionId") != _js(second, "client.connectionId")
    with _front(first).expect_response("**/api/simulate") as simulated:
        first.get_by_test_id("simulate-notification").click()
    [notified] = simulated.value.json()["eventIds"]
    for tab in (first, second):  # no connection to leave out: both tabs get it
        tab.wait_for_function(f"() => window.fanoutDemo.stats.frames.includes({json.dumps(notified)})")
    expect(first.get_by_test_id("badge")).not_to_have_attribute("data-count", "0")
    expect(second.get_by_test_id("badge")).to_have_attribute("data-count", str(_badge(first)))

    with first.expect_response("**/api/notifications/read") as marked:
        first.get_by_test_id("mark-read").click()
    expect(second.get_by_test_id("badge")).to_have_attribute("data-count", "0")
    expect(first.get_by_test_id("badge")).to_have_attribute("data-count", "0")
    text = f"from the first tab {time.monotonic_ns()}"
    with first.expect_response("**/api/messages") as sent:
        first.get_by_test_id("composer").fill(text)
        first.get_by_test_id("composer").press("Enter")
    expect(second.get_by_test_id("message").filter(has_text=text)).to_have_count(1)
    expect(first.get_by_test_id("message").filter(has_text=text)).to_have_attribute("data-state", "sent")

    own = [*marked.value.json()["eventIds"], sent.value.json()["message"]["eventId"]]
    second.wait_for_function(
        f"() => {json.dumps(own)}.every((id) => window.fanoutDemo.stats.frames.includes(id))"
    )
    first_frames = _js(first, "stats.frames")
    assert [] == [event_id for event_id in own if event_id in first_frames]
