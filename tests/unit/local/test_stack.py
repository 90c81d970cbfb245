"""The local stack's start: each part once what it needs answers, lines in a fixed order, clear failures."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from fanout.config import Settings
from fanout.errors import ConfigError
from fanout.local.stack import LocalStack, Part, wait_stopped
from tests.conftest import stack_env


def _stack(tmp_path: Path, lines: list[str], **parts: bool) -> LocalStack:
    """A stack on free ports whose children read the same settings (they take them from ``env``)."""
    env = stack_env()
    settings = Settings(**{k[len("FANOUT_") :].lower(): v for k, v in env.items()})
    stack = LocalStack(settings, tmp_path, echo=lines.append, **parts)
    stack.env |= env
    return stack


def _watch(part: Part, answered: dict[str, float]) -> None:
    """Note when ``part`` first answers."""
    ready = part.ready

    def watched() -> bool:
        ok = ready()
        if ok:
            answered.setdefault(part.slug, time.monotonic())
        return ok

    part.ready = watched


def _spawned(part: Part, timeout_s: float) -> float:
    return part.deadline - timeout_s


def test_each_part_starts_once_what_it_needs_answers_and_lines_keep_their_order(tmp_path: Path) -> None:
    """The gateway starts once MongoDB answers, the demo page once the queues exist; lines come in order."""
    lines: list[str] = []
    stack = _stack(tmp_path, lines, worker=False, demo=True)
    assert stack.mongo is not None and stack.demo is not None
    answered: dict[str, float] = {}
    for part in (stack.moto, stack.mongo, stack.gateway, stack.demo):
        _watch(part, answered)
    try:
        stack.start(timeout_s=60)
        started = list(stack.parts)
    finally:
        stack.stop()
    assert ["SQS+SNS (moto)", "MongoDB (SecantusDB)", "API Gateway (emulator)", "demo page"] == [
        line[2:26].rstrip() for line in lines
    ]
    assert [stack.moto, stack.mongo, stack.gateway, stack.demo] == started
    assert answered["mongodb"] <= _spawned(stack.gateway, 60)
    assert max(answered["mongodb"], answered["moto"]) <= _spawned(stack.demo, 60)
    assert all(p.process is not None and p.process.returncode is not None for p in started)


def test_a_part_that_exits_fails_the_start_by_name_and_stop_ends_the_others(tmp_path: Path) -> None:
    """A gateway that exits at once: start names it and the log folder; stop ends the parts started."""
    stack = _stack(tmp_path, [], worker=True, demo=False)
    stack.gateway.argv = [sys.executable, "-c", "raise SystemExit(3)"]
    try:
        with pytest.raises(ConfigError, match=rf"API Gateway \(emulator\) exited with 3; see {tmp_path}"):
            stack.start(timeout_s=60)
        started = list(stack.parts)
    finally:
        stack.stop()
    assert [stack.moto, stack.mongo, stack.gateway] == started[:3]
    assert all(p.process is not None and p.process.returncode is not None for p in started)
    assert [] == stack.parts


def test_wait_stopped_wakes_a_process_while_it_waits_and_times_out_on_one_that_stays() -> None:
    """``wait_stopped`` calls ``wake`` while the process runs, and raises TimeoutExpired when it stays."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    woken: list[float] = []
    try:
        with pytest.raises(subprocess.TimeoutExpired):
            wait_stopped(process, 0.5, wake=lambda: woken.append(time.monotonic()))
        assert process.poll() is None
        assert len(woken) >= 2
    finally:
        process.kill()
        process.wait()
    wait_stopped(process, 0.5, wake=lambda: woken.append(time.monotonic()))  # returns: it has exited
