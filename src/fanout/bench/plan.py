"""What the benchmark runs: the event it sends, and how much of it each phase does in each mode."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

EVENT_TYPE = "notification.new"
FRAME_BYTES = 1024  # every client frame, in every phase and baseline
AUDIENCES = (1, 100, 1000)  # users per publish call in the request-path phases


@dataclass(frozen=True)
class Plan:
    """How much work each phase does."""

    mode: str
    users: int = 1000  # one WebSocket connection each
    throughput_posts: dict[int, int] = field(default_factory=dict)  # fan-out -> posts
    latency_s: float = 5.0
    publish_calls: int = 50
    inline_calls: dict[int, int] = field(default_factory=dict)  # audience -> the inline design's calls
    inline_posts: int = 400  # posts for the inline baseline's CPU and throughput at fan-out 20
    baseline_posts: int = 2000  # posts for aiobotocore and the floor
    soak_s: float = 0.0
    pool: tuple[int, ...] = ()
    broadcast: int = 0  # virtual connections (emulator ids ``virt.*``) the broadcast phase adds
    receive_wait_s: int = 5  # the worker's long poll (``fanout dev``'s): a stopping worker waits it out


#: The smallest counts that run every phase of the full plan once, soak and pool included: the integration
#: test's run. Measures nothing. 200 clients, as many as the widest fan-out: ``Publisher.publish`` still
#: times every audience (its users need no connection), the inline design only those the clients cover.
SMOKE = Plan(
    mode="smoke",
    users=200,
    # /proc counts CPU in 10 ms ticks: each phase needs well over 10 ms of the worker's CPU to read above 0.
    # 20 posts at fan-out 2 (10 events, about 6 ms) read 0 once the worker got cheaper per event.
    throughput_posts={1: 60, 2: 80, 20: 200, 200: 400},
    latency_s=0.2,
    publish_calls=3,
    inline_calls={1: 1, 100: 1},
    inline_posts=40,
    baseline_posts=100,
    soak_s=0.2,
    pool=(2,),
    broadcast=200,
    receive_wait_s=1,  # the pool curve's restart and the end stop a worker each
)
#: Small counts, under two minutes: checks the harness, not speed.
QUICK = Plan(
    mode="quick",
    throughput_posts={1: 400, 2: 400, 20: 2000, 200: 2000},
    latency_s=4.0,
    publish_calls=40,
    inline_calls={1: 20, 100: 4, 1000: 2},
    inline_posts=400,
    baseline_posts=2000,
    broadcast=5000,
)
#: The figures in ``bench/README.md``: about 15 minutes.
FULL = Plan(
    mode="full",
    throughput_posts={1: 4000, 2: 6000, 20: 30000, 200: 40000},
    latency_s=20.0,
    publish_calls=300,
    inline_calls={1: 200, 100: 30, 1000: 10},
    inline_posts=4000,
    baseline_posts=20000,
    soak_s=600.0,  # the "after 10 minutes of sustained load"
    pool=(1, 2),
    broadcast=100_000,  # the size; more sockets than this machine can open, so virtual ones
)


PLANS = {plan.mode: plan for plan in (SMOKE, QUICK, FULL)}


def plan_for(mode: str, soak_s: float | None = None) -> Plan:
    """The plan of ``mode`` (smoke, quick or full), with its soak replaced when ``soak_s`` is given."""
    plan = PLANS[mode]
    return plan if soak_s is None else replace(plan, soak_s=soak_s)
