"""Process accounting read from /proc: the tree, its CPU and RSS, the machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from fanout.bench.proc import cpu_seconds, machine, machine_busy_seconds, process_tree, rss_mb


def test_tree_cpu_and_rss_include_a_child() -> None:
    """A child that burns CPU is in its parent's tree, and its CPU and RSS count toward the tree."""
    burn = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\ninput()"
    child = subprocess.Popen([sys.executable, "-c", burn], stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while cpu_seconds(child.pid) < 0.25 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert child.pid in process_tree(os.getpid())
        assert cpu_seconds(os.getpid()) - time.process_time() >= 0.25 - 0.05
        assert len(rss_mb(os.getpid())) >= 2
        assert all(mb > 1 for mb in rss_mb(child.pid))
    finally:
        child.communicate(b"\n", timeout=10)


def test_a_gone_process_reads_as_nothing() -> None:
    """A pid that has exited has no CPU and no RSS rather than an error."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert (0.0, []) == (cpu_seconds(child.pid), rss_mb(child.pid))


def test_machine_busy_time_grows_and_machine_is_described() -> None:
    """The machine's busy seconds do not go back; machine() names the cores, Python and date."""
    before = machine_busy_seconds()
    m = machine()
    assert machine_busy_seconds() >= before
    assert (os.cpu_count(), 3) == (m.cores, len(m.loadavg_at_start))
    assert m.python.startswith("3.") and m.date.endswith("+00:00")
