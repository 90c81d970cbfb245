"""The pool supervisor reports what only it can see."""

import json

from fanout.config import Settings
from fanout.worker.pool import Pool


def test_restarts_reach_cloudwatch_from_the_supervisor() -> None:
    """With EMF on, the supervisor prints ProcessRestarts as the change since its last line."""
    pool = Pool(Settings(cloudwatch_emf=True), processes=2)
    lines: list[str] = []
    emitter = pool._emf()
    emitter._write = lines.append
    pool.restarts = 3
    emitter.flush()
    pool.restarts = 4
    emitter.flush()
    values = [json.loads(line)["ProcessRestarts"] for line in lines]
    assert [3.0, 1.0] == values


def test_no_emf_by_default() -> None:
    """EMF is off unless FANOUT_CLOUDWATCH_EMF is set."""
    assert Pool(Settings(), processes=1)._emf() is None


def test_only_the_first_worker_process_runs_the_relay() -> None:
    """With FANOUT_RELAY=true, one process of the pool relays the outbox; the others only consume."""
    pool = Pool(Settings(relay=True), 3)
    assert [True, False, False] == [pool.settings_for(slot).relay for slot in range(3)]
    assert not Pool(Settings(), 2).settings_for(0).relay
