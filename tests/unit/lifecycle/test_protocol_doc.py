"""docs/protocol.md section 8 names the lifecycle's error codes and limits as the code defines them."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from fanout.config import Settings
from fanout.lifecycle import handler, hello, presence, resume, topics
from fanout.lifecycle.limits import WINDOW_S

ROOT = Path(__file__).resolve().parents[3]
PROTOCOL = (ROOT / "docs" / "protocol.md").read_text()
SECTION_8 = PROTOCOL.split("## 8. Client actions", 1)[1].split("## 9. ", 1)[0]
LIFECYCLE = sorted((ROOT / "src" / "fanout" / "lifecycle").glob("*.py"))
DEFAULTS = Settings.model_fields


def _rows(header: str) -> dict[str, list[str]]:
    """The rows of section 8's table under ``header``, by their first cell."""
    table = SECTION_8.split(header, 1)[1].split("\n\n", 1)[0]
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines()[2:]]
    return {row[0]: row[1:] for row in cells}


def _answered_codes() -> set[str]:
    """Every code the lifecycle answers ``system.error`` with: the first argument of ``error(...)``."""
    found: set[str] = set()
    for path in LIFECYCLE:
        for node in ast.walk(ast.parse(path.read_text())):
            call = isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "error"
            if call and node.args and isinstance(node.args[0], ast.Constant):
                found.add(str(node.args[0].value))
    return found


def test_the_error_codes_table_is_the_codes_the_lifecycle_answers() -> None:
    """Each system.error code the lifecycle answers has a row in section 8's codes table, and no row
    names a code it never answers."""
    answered = _answered_codes()
    assert {"bad_frame", "rate_limited", "bad_resume", "bad_hello"} <= answered
    documented = {cell.strip("`") for cell in _rows("| code | when |")}
    assert (set(), set()) == (answered - documented, documented - answered)


@pytest.mark.parametrize(
    ("action", "limit", "window"),
    [
        ("`subscribe`, `notification.subscribe` (one count)", f"{topics.SUBSCRIBE_TOPICS_PER_WINDOW:,} topics named", f"{WINDOW_S} s"),
        ("`unsubscribe`", f"{topics.UNSUBSCRIBES_PER_WINDOW:,} frames", f"{WINDOW_S} s"),
        ("`presence.query`", f"{presence.PRESENCE_USERS_PER_WINDOW:,} users named", f"{WINDOW_S} s"),
        ("`hello`", f"{hello.HELLOS_PER_WINDOW:,} frames", f"{WINDOW_S} s"),
        ("`resume`", f"{resume.RESUMES_PER_WINDOW:,} frames", f"{WINDOW_S} s"),
        ("`chat.typing`", f"`FANOUT_TYPING_RATE` ({DEFAULTS['typing_rate'].default}) frames", f"{WINDOW_S} s"),
        ("`chat.ack`", f"`FANOUT_ACK_RATE` ({DEFAULTS['ack_rate'].default}) frames", f"{WINDOW_S} s"),
        (
            "forwarded actions",
            f"`FANOUT_FORWARD_RATE` ({DEFAULTS['forward_rate'].default}) frames",
            f"`FANOUT_FORWARD_WINDOW_S` ({DEFAULTS['forward_window_s'].default} s)",
        ),
    ],
)  # fmt: skip
def test_the_rate_limits_table_holds_the_lifecycles_limits(action: str, limit: str, window: str) -> None:
    """Each row of section 8's rate limits table states the limit and window the lifecycle enforces."""
    row = _rows("| action | limit per connection | per window | why this much |")[action]
    assert (limit, window) == (row[0].split(" (a frame")[0], row[1])


def test_the_rate_limited_code_and_the_other_limits_name_the_codes_values() -> None:
    """The rate_limited row, the frame size, topic and resume bounds and the heartbeat are the code's."""
    [row] = _rows("| code | when |")["`rate_limited`"]
    assert f"{resume.RESUMES_PER_WINDOW} `resume`, {hello.HELLOS_PER_WINDOW} `hello`" in row
    assert f"{topics.UNSUBSCRIBES_PER_WINDOW} `unsubscribe` frames" in row
    assert f"{topics.SUBSCRIBE_TOPICS_PER_WINDOW:,} topics named" in row
    assert f"{presence.PRESENCE_USERS_PER_WINDOW} users named" in row
    assert f"at most {handler.MAX_FRAME_BYTES // 1024} KiB" in SECTION_8
    assert f"A connection holds at most {topics.MAX_TOPICS} topics" in SECTION_8
    [bad_resume] = _rows("| code | when |")["`bad_resume`"]
    assert f"at most {resume.MAX_POSITIONS} `kind:id` keys" in bad_resume
    assert f"at most {resume.MAX_EARLIER} strings" in bad_resume
    assert f'"heartbeatS":{hello.HEARTBEAT_S}' in PROTOCOL
    assert re.search(rf"send {resume.RESUMES_PER_WINDOW} resumes per {WINDOW_S}-second window", PROTOCOL)
