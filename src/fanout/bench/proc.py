"""Process accounting from ``/proc``: CPU and RSS of a process tree, the machine's busy time, the machine.

The worker's CPU is read here (``/proc/<pid>/stat`` of the worker and its children) rather than with
``time.process_time``, because the worker is another process; the baselines run in the bench's own
process and use ``time.process_time``. Processes that end between listing and reading are skipped.
"""

from __future__ import annotations

import os
import platform
from datetime import UTC, datetime

from fanout.bench.results import Machine

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as fh:
                out.extend(int(p) for p in fh.read().split())
    except OSError:
        pass
    return out


def process_tree(root: int) -> list[int]:
    """``root`` and every live descendant."""
    pids, todo = [], [root]
    while todo:
        pid = todo.pop()
        pids.append(pid)
        todo.extend(_children(pid))
    return pids


def cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and its live descendants."""
    total = 0
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rpartition(")")[2].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)
    return total / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time every core of the machine spent busy (``/proc/stat``): all processes, ours or not."""
    with open("/proc/stat") as fh:
        ticks = [int(x) for x in fh.readline().split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / CLK_TCK  # minus idle and iowait


def rss_mb(root: int) -> list[float]:
    """Resident set size of each process in the tree, MB."""
    out = []
    for pid in process_tree(root):
        try:
            with open(f"/proc/{pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        out.append(int(line.split()[1]) / 1024)
        except OSError:
            continue
    return out


def machine() -> Machine:
    """The CPU model, cores, Python, platform, the time now and the load average now."""
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return Machine(
        cpu=model,
        cores=os.cpu_count(),
        python=platform.python_version(),
        platform=platform.platform(),
        date=datetime.now(UTC).isoformat(timespec="seconds"),
        loadavg_at_start=list(os.getloadavg()),
    )
