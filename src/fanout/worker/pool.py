"""The worker pool: N worker processes under one supervisor with one ``/metrics`` for all of them.

Each child is a fresh interpreter (spawn: pymongo and aiohttp are not fork-safe) that builds its own
clients. The supervisor restarts a crashed child with backoff, kills and restarts one whose worker loop
has not ticked for ``FANOUT_STALL_S`` (wedged: its messages come back after their visibility timeout),
forwards SIGTERM, and serves ``/metrics`` (prometheus-client multiprocess mode), ``/healthz`` and
``/readyz`` for the pool.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.context import SpawnProcess
from multiprocessing.sharedctypes import Synchronized
from typing import Any

from aiohttp import web

from fanout.config import Settings
from fanout.health import health_app, serve
from fanout.lifeline import die_with_parent
from fanout.logging import get_logger

log = get_logger("fanout.pool")

MAX_BACKOFF_S = 30.0


def _child_main(settings: Settings, slot: int, beat: Synchronized[float]) -> None:
    """Entry point of the worker process in ``slot``; slot 0 also takes the socket census. ``beat`` gets
    the worker loop's heartbeat every second, for the supervisor to see a wedged loop."""
    from fanout import logging as fanout_logging
    from fanout.worker.consumer import Worker

    die_with_parent()  # a supervisor killed with SIGKILL takes its workers with it
    fanout_logging.configure(settings.log_level, settings.log_format or "json")
    worker = Worker(settings, serve_health=False, census=slot == 0)

    async def run() -> None:
        async def mirror() -> None:
            while True:
                beat.value = worker.readiness.heartbeat  # CLOCK_MONOTONIC: one clock for every process
                await asyncio.sleep(1)

        mirroring = asyncio.create_task(mirror())
        try:
            await worker.main()
        finally:
            mirroring.cancel()

    asyncio.run(run())


class _PoolCollector:
    """Supervisor-side figures that no child can write: restarts and live children."""

    def __init__(self, pool: Pool) -> None:
        self._pool = pool

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        yield CounterMetricFamily(
            "fanout_process_restarts", "Worker processes restarted", value=self._pool.restarts
        )
        yield GaugeMetricFamily("fanout_processes", "Live worker processes", value=self._pool.alive())


class Pool:
    """Supervises ``processes`` workers until SIGTERM/SIGINT."""

    def __init__(self, settings: Settings, processes: int) -> None:
        self.settings = settings
        self.processes = processes
        self.restarts = 0
        self.children: list[SpawnProcess | None] = [None] * processes
        self._ctx = multiprocessing.get_context("spawn")
        self._beats = [self._ctx.Value("d", 0.0, lock=False) for _ in range(processes)]
        self._stop = asyncio.Event()

    def alive(self) -> int:
        return sum(1 for c in self.children if c is not None and c.is_alive())

    def settings_for(self, slot: int) -> Settings:
        """A child's settings: only the first runs the outbox relay (FANOUT_RELAY), one per task."""
        return self.settings if slot == 0 else self.settings.model_copy(update={"relay": False})

    def _spawn(self, slot: int) -> None:
        self._beats[slot].value = 0.0  # no beat yet: starting (imports, first connect) is not a stall
        child = self._ctx.Process(
            target=_child_main,
            args=(self.settings_for(slot), slot, self._beats[slot]),
            name=f"fanout-worker-{slot}",
        )
        child.start()
        self.children[slot] = child
        log.info("worker_process_started", slot=slot, pid=child.pid)

    async def main(self) -> int:
        """Run the pool; returns the exit code."""
        metrics_dir = tempfile.mkdtemp(prefix="fanout-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir  # inherited by every spawned child
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._stop.set)
        try:
            runner = await self._serve(metrics_dir)
        except BaseException:  # cannot listen (ConfigError): nothing started, nothing left behind
            shutil.rmtree(metrics_dir, ignore_errors=True)
            raise
        emf = self._emf()
        emf_task = asyncio.create_task(emf.run()) if emf else None
        try:
            for slot in range(self.processes):
                self._spawn(slot)
            await self._supervise()
        finally:
            await self._terminate()
            if emf and emf_task:
                emf_task.cancel()
                await asyncio.gather(emf_task, return_exceptions=True)
                emf.flush()
            await runner.cleanup()
            shutil.rmtree(metrics_dir, ignore_errors=True)
        log.info("pool_stopped", restarts=self.restarts)
        return 0

    async def _supervise(self) -> None:
        """Restart children that die: after 1 s, doubling up to 30 s; a minute of uptime resets it. A child
        whose worker loop has not ticked for ``stall_s`` is killed first (a wedged loop never ends)."""
        from prometheus_client import multiprocess

        backoff = [1.0] * self.processes
        started = [time.monotonic()] * self.processes
        due: dict[int, float] = {}
        while not self._stop.is_set():
            now = time.monotonic()
            for slot, child in enumerate(self.children):
                beat = self._beats[slot].value
                if child is not None and child.is_alive() and beat and now - beat > self.settings.stall_s:
                    log.error("worker_process_stalled", slot=slot, pid=child.pid, silent_s=round(now - beat))
                    child.kill()
                    child.join(5)
                if child is None or child.is_alive():
                    continue
                if child.pid is not None:
                    multiprocess.mark_process_dead(child.pid)  # type: ignore[no-untyped-call]
                if now - started[slot] > 60:
                    backoff[slot] = 1.0
                log.error("worker_process_died", slot=slot, exitcode=child.exitcode, restart_in=backoff[slot])
                self.children[slot] = None
                due[slot] = now + backoff[slot]
                backoff[slot] = min(MAX_BACKOFF_S, backoff[slot] * 2)
            for slot, when in list(due.items()):
                if now >= when:
                    del due[slot]
                    self.restarts += 1
                    self._spawn(slot)
                    started[slot] = time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop.wait(), 0.5)

    async def _terminate(self) -> None:
        """Forward SIGTERM; kill what has not stopped within the shutdown budget plus a margin."""
        live = [c for c in self.children if c is not None and c.is_alive()]
        for child in live:
            child.terminate()
        deadline = time.monotonic() + self.settings.shutdown_budget_s + 5
        while any(c.is_alive() for c in live) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        for child in live:
            if child.is_alive():
                log.error("worker_process_killed", pid=child.pid)
                child.kill()
            child.join(1)

    def _emf(self) -> Any:
        """CloudWatch gets the restarts from here: the children cannot see them."""
        if not self.settings.cloudwatch_emf:
            return None
        from prometheus_client import CollectorRegistry

        from fanout.emf import EmfEmitter

        registry = CollectorRegistry()
        registry.register(_PoolCollector(self))
        s = self.settings
        return EmfEmitter(
            registry,
            namespace=s.cloudwatch_namespace,
            interval_s=s.cloudwatch_interval_s,
            only={"ProcessRestarts"},
        )

    def _registry(self, metrics_dir: str) -> Any:
        from prometheus_client import CollectorRegistry, multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
        registry.register(_PoolCollector(self))
        return registry

    def ready(self, registry: Any) -> bool:
        """Every child is alive and each reports SQS and MongoDB reachable. A child still importing has
        no ``fanout_ready`` of its own yet, so the others' would speak for it: it must have ticked too."""
        if self.alive() < self.processes or not all(beat.value for beat in self._beats):
            return False
        for family in registry.collect():
            if family.name == "fanout_ready":
                values = [s.value for s in family.samples]
                return bool(values) and min(values) >= 1
        return False

    async def _serve(self, metrics_dir: str) -> web.AppRunner:
        def live() -> tuple[bool, dict[str, Any]]:
            return self.alive() > 0, {"ok": self.alive() > 0, "processes": self.alive()}

        def ready() -> tuple[bool, dict[str, Any]]:
            ok = self.ready(self._registry(metrics_dir))
            return ok, {"ready": ok, "processes": self.alive(), "wanted": self.processes}

        app = health_app(lambda: self._registry(metrics_dir), live, ready)
        return await serve(app, self.settings.metrics_host, self.settings.metrics_port)
