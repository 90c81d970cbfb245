"""The benchmark's results as types, and the JSON file they are written to and read from.

The JSON keeps the shape of every earlier ``bench/results/*.json`` so runs stay comparable: the
headline figures appear again at the top level (``posts_per_s``, ``latency_ms``, ``*_cpu_us_per_post``,
``rss_mb`` ...). Here each is stored once and the repeats are derived when the file is written; reading
a file back ignores them. Fan-outs and audiences are ``int`` keys here and strings in the JSON.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Self, TypeVar

Json = dict[str, Any]
V = TypeVar("V")

HEADLINE_FANOUT = 20  # the fan-out whose figures the targets and the top-level keys quote


def pct(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(-(-q * len(ordered) // 100)) - 1))
    return ordered[rank]


class _Flat:
    """A dataclass of plain fields, written as a JSON object with the same keys in the same order."""

    def to_json(self) -> Json:
        return asdict(self)  # type: ignore[call-overload, no-any-return]

    @classmethod
    def from_json(cls, doc: Json) -> Self:
        return cls(**doc)


@dataclass(frozen=True)
class Percentiles(_Flat):
    """p50, p95 and p99 of ``n`` samples (ms), rounded to the microsecond."""

    p50: float
    p95: float
    p99: float
    n: int

    @staticmethod
    def of(values: Sequence[float]) -> Percentiles:
        p50, p95, p99 = (round(pct(values, q), 3) for q in (50, 95, 99))
        return Percentiles(p50, p95, p99, len(values))


@dataclass(frozen=True)
class Latency(Percentiles):
    """Publish-to-received latency as the clients saw it, at an offered rate (posts/s)."""

    offered_posts_per_s: float

    @staticmethod
    def at(offered_posts_per_s: float, values: Sequence[float]) -> Latency:
        return Latency(**asdict(Percentiles.of(values)), offered_posts_per_s=offered_posts_per_s)


@dataclass(frozen=True)
class Check(_Flat):
    """Frames a phase made the worker or a baseline send, against frames the clients received."""

    expected: int
    received: int


@dataclass(frozen=True)
class Throughput(_Flat):
    """One closed-loop throughput phase of the worker; CPU from /proc of the worker's processes."""

    posts: int
    events: int
    seconds: float
    posts_per_s: float
    worker_cpu_us_per_post: float
    worker_cpu_share: float  # cores the worker kept busy
    others_cpu_share: float  # cores busy with everything else on the machine
    worker_processes_seen: int | None = None  # pool phases only
    worker_cpu_us_per_event: float | None = None  # the worker's CPU over the events it fanned out

    def to_json(self) -> Json:
        doc = asdict(self)
        for optional in ("worker_processes_seen", "worker_cpu_us_per_event"):
            if doc[optional] is None:
                del doc[optional]
        return doc


@dataclass(frozen=True)
class PoolFailure(_Flat):
    """A pool size whose worker did not start."""

    error: str


@dataclass(frozen=True)
class Baseline(_Flat):
    """(b), (c) or (c'): posts at fan-out 20 from this process; CPU of this process."""

    posts: int
    received: int
    posts_per_s: float
    cpu_us_per_post: float


@dataclass(frozen=True)
class Inline:
    """(a) the inline design: request-path time by audience, and CPU per post at fan-out 20."""

    request_ms: dict[int, Percentiles]
    posts_per_s: float
    cpu_us_per_post: float
    cpu_us_per_event_fanout_1: float | None = None  # one user, one connection: the common event

    def to_json(self) -> Json:
        doc: Json = {
            "request_ms": _by_key(self.request_ms, Percentiles.to_json),
            "posts_per_s": self.posts_per_s,
            "cpu_us_per_post": self.cpu_us_per_post,
        }
        if self.cpu_us_per_event_fanout_1 is not None:
            doc["cpu_us_per_event_fanout_1"] = self.cpu_us_per_event_fanout_1
        return doc

    @classmethod
    def from_json(cls, doc: Json) -> Inline:
        request_ms = _from_keys(doc["request_ms"], Percentiles.from_json)
        return cls(
            request_ms, doc["posts_per_s"], doc["cpu_us_per_post"], doc.get("cpu_us_per_event_fanout_1")
        )


@dataclass(frozen=True)
class Soak:
    """The full mode's long steady phase, sampling the worker's RSS every five seconds."""

    seconds: float
    latency_ms: Latency
    rss_mb_samples: list[tuple[float, float]]  # (seconds since the start, MB of the largest process)
    rss_growth_mb_second_half: float

    def to_json(self) -> Json:
        return {
            "seconds": self.seconds,
            "latency_ms": self.latency_ms.to_json(),
            "rss_mb_samples": [list(s) for s in self.rss_mb_samples],
            "rss_growth_mb_second_half": self.rss_growth_mb_second_half,
        }

    @classmethod
    def from_json(cls, doc: Json) -> Soak:
        samples = [(t, mb) for t, mb in doc["rss_mb_samples"]]
        latency = Latency.from_json(doc["latency_ms"])
        return cls(doc["seconds"], latency, samples, doc["rss_growth_mb_second_half"])


@dataclass(frozen=True)
class Rss(_Flat):
    """RSS samples of the worker during a phase (its whole process tree), MB: first, largest, last,
    growth."""

    first: float
    max: float
    last: float
    growth: float  # last - first

    @staticmethod
    def of(samples: Sequence[float]) -> Rss:
        first, last = samples[0], samples[-1]
        return Rss(first, max(samples), last, round(last - first, 1))


@dataclass(frozen=True)
class Broadcast:
    """One broadcast to the emulator's virtual connections and the clients, with the worker's CPU and
    RSS during it, and the latency of notifications published to the clients meanwhile."""

    connections: int  # records the broadcast addressed: virtual ones and the clients'
    processes: int  # worker processes (pool size)
    shards: int  # parts the worker split it into (fanout_shards_total)
    posts: int  # posts answered: virtual ones counted by the emulator, frames the clients received
    seconds: float
    posts_per_s: float
    point_to_point_posts_per_s: float  # throughput at fan-out 20 with as many processes
    over_point_to_point: float
    worker_cpu_us_per_post: float
    worker_cpu_share: float
    others_cpu_share: float  # cores busy with everything but the worker
    secantus_cpu_share: float  # of which SecantusDB (MongoDB)
    emulator_cpu_share: float  # of which the gateway emulator
    lookup_ms_mean: float  # mean time the worker waited for a batch of records (fanout_lookup_latency)
    rss_mb: Rss
    urgent_ms: Percentiles  # publish-to-received of notification.new events published during it
    insert_s: float  # writing the virtual records, before the broadcast (not timed in it)

    def to_json(self) -> Json:
        doc = asdict(self)
        doc["rss_mb"], doc["urgent_ms"] = self.rss_mb.to_json(), self.urgent_ms.to_json()
        return doc

    @classmethod
    def from_json(cls, doc: Json) -> Broadcast:
        nested = {
            "rss_mb": Rss.from_json(doc["rss_mb"]),
            "urgent_ms": Percentiles.from_json(doc["urgent_ms"]),
        }
        return cls(**(doc | nested))


@dataclass(frozen=True)
class Machine(_Flat):
    """Where and when the run happened."""

    cpu: str
    cores: int | None
    python: str
    platform: str
    date: str
    loadavg_at_start: list[float]


@dataclass(frozen=True)
class Target:
    """One of the issue's targets: a figure, its bound (``"<= 1.3"`` or ``">= 3"``), and whether it is met."""

    value: float
    target: str

    @property
    def met(self) -> bool:
        op, limit = self.target.split()
        return self.value <= float(limit) if op == "<=" else self.value >= float(limit)

    def to_json(self) -> Json:
        return {"value": self.value, "target": self.target, "met": self.met}

    @classmethod
    def from_json(cls, doc: Json) -> Target:
        return cls(doc["value"], doc["target"])


@dataclass(frozen=True)
class Results:
    """Everything one run measured, the targets judged on it, and how long it took."""

    mode: str
    machine: Machine
    connections: int
    checks: dict[str, Check]
    throughput: dict[int, Throughput]
    latency_by_fanout: dict[int, Latency]
    publish_ms: dict[int, Percentiles]
    inline: Inline
    aiobotocore: Baseline
    floor: Baseline
    client_floor: Baseline
    rss_mb_per_process: list[float]
    soak: Soak | None = None
    pool: dict[int, Throughput | PoolFailure] | None = None
    broadcast: Broadcast | None = None
    targets: dict[str, Target] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def headline(self) -> Throughput:
        return self.throughput[HEADLINE_FANOUT]

    @property
    def latency_ms(self) -> Latency:
        return self.latency_by_fanout[HEADLINE_FANOUT]

    @property
    def rss_mb(self) -> float:
        return max(self.rss_mb_per_process)

    @property
    def worker_over_client_floor(self) -> float:
        """Not a target: how much of the worker's CPU lies outside its own HTTP requests."""
        return round(self.headline.worker_cpu_us_per_post / self.client_floor.cpu_us_per_post, 2)

    @property
    def received_all(self) -> bool:
        return all(c.received >= c.expected for c in self.checks.values())

    def to_json(self) -> Json:
        """The JSON document, in the key order of every earlier run."""
        lat = self.latency_ms
        doc: Json = {
            "checks": {name: c.to_json() for name, c in self.checks.items()},
            "machine": self.machine.to_json(),
            "mode": self.mode,
            "connections": self.connections,
            "throughput": _by_key(self.throughput, Throughput.to_json),
            "posts_per_s": self.headline.posts_per_s,
            "worker_cpu_us_per_post": self.headline.worker_cpu_us_per_post,
            "latency_by_fanout": _by_key(self.latency_by_fanout, Latency.to_json),
            "latency_ms": {"p50": lat.p50, "p95": lat.p95, "p99": lat.p99},
        }
        if self.soak is not None:
            doc["soak"] = self.soak.to_json()
        doc |= {
            "publish_ms": _by_key(self.publish_ms, Percentiles.to_json),
            "inline": self.inline.to_json(),
            "inline_publish_ms": _by_key(self.inline.request_ms, Percentiles.to_json),
            "inline_cpu_us_per_post": self.inline.cpu_us_per_post,
        }
        for name, baseline in (
            ("aiobotocore", self.aiobotocore),
            ("floor", self.floor),
            ("client_floor", self.client_floor),
        ):
            doc[name] = baseline.to_json()
            doc[f"{name}_cpu_us_per_post"] = baseline.cpu_us_per_post
        doc |= {
            "worker_over_client_floor": self.worker_over_client_floor,
            "rss_mb": self.rss_mb,
            "rss_mb_per_process": self.rss_mb_per_process,
        }
        if self.pool is not None:
            doc["pool"] = _by_key(self.pool, lambda t: t.to_json())
        if self.broadcast is not None:
            doc["broadcast"] = self.broadcast.to_json()
        doc |= {
            "received_all": self.received_all,
            "targets": {name: t.to_json() for name, t in self.targets.items()},
            "seconds": self.seconds,
        }
        return doc

    @classmethod
    def from_json(cls, doc: Json) -> Results:
        """Read a results file back; the repeated top-level figures are derived, not read."""
        pool = doc.get("pool")
        return cls(
            mode=doc["mode"],
            machine=Machine.from_json(doc["machine"]),
            connections=doc["connections"],
            checks={name: Check.from_json(c) for name, c in doc["checks"].items()},
            throughput=_from_keys(doc["throughput"], Throughput.from_json),
            latency_by_fanout=_from_keys(doc["latency_by_fanout"], Latency.from_json),
            publish_ms=_from_keys(doc["publish_ms"], Percentiles.from_json),
            inline=Inline.from_json(doc["inline"]),
            aiobotocore=Baseline.from_json(doc["aiobotocore"]),
            floor=Baseline.from_json(doc["floor"]),
            client_floor=Baseline.from_json(doc["client_floor"]),
            rss_mb_per_process=doc["rss_mb_per_process"],
            soak=Soak.from_json(doc["soak"]) if "soak" in doc else None,
            pool=None if pool is None else _from_keys(pool, _pool_entry),
            broadcast=Broadcast.from_json(doc["broadcast"]) if "broadcast" in doc else None,
            targets={name: Target.from_json(t) for name, t in doc["targets"].items()},
            seconds=doc["seconds"],
        )


def _pool_entry(doc: Json) -> Throughput | PoolFailure:
    return PoolFailure.from_json(doc) if "error" in doc else Throughput.from_json(doc)


def _by_key(values: dict[int, V], write: Callable[[V], Json]) -> Json:
    return {str(k): write(v) for k, v in values.items()}


def _from_keys(doc: Json, read: Callable[[Json], V]) -> dict[int, V]:
    return {int(k): read(v) for k, v in doc.items()}
