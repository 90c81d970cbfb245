"""One source for the alarm thresholds and windows of both monitoring stacks.

The CloudWatch alarms (``fanout_cdk/alarms.py``) and the Prometheus rules (``prometheus/alerts.yml``,
generated from this file by ``alert_rules.py``) are both built from ``ALARMS``; ``tests/deploy`` checks the
synthesized alarms and the committed rule file against it. Why these values: ``docs/operations.md``.

Two tiers: a ``page`` wakes someone and its condition must hold for ``PAGE_WINDOW_MIN``; a ``ticket`` is
looked at in working hours and its condition must hold for ``TICKET_WINDOW_MIN``. CloudWatch reads one
datapoint a minute and fires when all the window's datapoints breach; Prometheus reads rates over
``RATE_WINDOW`` and fires when the condition has held (``for:``) for the window.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Literal

PAGE_WINDOW_MIN = 5
TICKET_WINDOW_MIN = 15
PERIOD_S = 60
RATE_WINDOW = "2m"  # Prometheus rate() range: at least 4 scrapes at a 30 s scrape interval
# Every alarm's runbook is a `#### Fanout...` section of docs/operations.md.
OPS_RUNBOOK = "docs/operations.md"

# Deliveries outcomes that are not a post at all, left out of every ratio over posts: `expired` is an
# event that expired while its post waited for a lane (the type's policy dropped it, nothing failed).
NOT_POSTED = ("expired", "unsupported_version")
# Also left out of the success and throttling ratios: `gone` (410) is a client that left without a
# $disconnect; its record is pruned, and no retry or fix on our side could deliver to it.
NOT_JUDGED = ("gone", *NOT_POSTED)


@dataclass(frozen=True)
class Alarm:
    """One alarm condition, named in each system that has it (None: that system cannot see the metric)."""

    cloudwatch: str | None  # CloudWatch alarm `{namePrefix}-{cloudwatch}`
    prometheus: str | None  # Prometheus alert name
    threshold: float
    unit: Literal["%", "s", "per minute", "count"]
    above: bool  # fires above the threshold (else below it)
    window_min: int
    severity: Literal["page", "ticket"]
    what: str  # the condition in words, "{threshold}" and "{window}" filled in by describe()
    runbook: str  # path#anchor
    # Traffic (per minute) under which a ratio is not judged: a few posts cannot make a percentage.
    min_per_min: float = 0
    # True: a count within the window exceeds the threshold; False: a level holds through the window.
    count: bool = False

    def describe(self) -> str:
        """The alarm's description: severity, the condition with its values, the runbook."""
        text = self.what.format(threshold=f"{self.threshold:g}", window=self.window_min)
        return f"[{self.severity}] {text}. Runbook: {self.runbook}"


_page = partial(Alarm, window_min=PAGE_WINDOW_MIN, severity="page")
_ticket = partial(Alarm, window_min=TICKET_WINDOW_MIN, severity="ticket")


DELIVERY_SUCCESS = _page(
    cloudwatch="DeliverySuccessLow",
    prometheus="FanoutDeliverySuccessLow",
    threshold=99,
    unit="%",
    above=False,
    min_per_min=3,
    what="Under {threshold}% of WebSocket posts succeeded (410s and expired excluded) for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutdeliverysuccesslow",
)
DELIVERY_LATENCY = _page(
    cloudwatch="DeliveryLatencyHigh",
    prometheus="FanoutDeliveryLatencyHigh",
    threshold=1,
    unit="s",
    above=True,
    what="p95 of event sentAt to post acknowledged over {threshold} s for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutdeliverylatencyhigh",
)
QUEUE_LAG = _page(
    cloudwatch="QueueLagHigh",
    prometheus="FanoutQueueLagHigh",
    threshold=30,
    unit="s",
    above=True,
    what="p95 of SQS SentTimestamp to a worker's receive over {threshold} s for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutqueuelaghigh",
)
OLDEST_MESSAGE = _page(
    cloudwatch="OldestMessageOld",
    prometheus=None,  # Prometheus does not see SQS; FanoutWorkerNotReady covers workers that stopped
    threshold=60,
    unit="s",
    above=True,
    what="The oldest queued event has waited over {threshold} s for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutqueuelaghigh",
)
DEAD_LETTERS = Alarm(
    cloudwatch="DeadLetters",
    prometheus="FanoutDeadLettered",
    threshold=0,
    unit="count",
    above=True,
    window_min=1,  # any dead letter opens a ticket at once: waiting would not change what to do
    severity="ticket",
    what="Messages are in the dead-letter queue: `fanout dlq inspect` says why",
    runbook=f"{OPS_RUNBOOK}#fanoutdeadlettered",
)
GONE_SPIKE = _ticket(
    cloudwatch="GoneRateSpike",
    prometheus="FanoutGoneRateSpike",
    threshold=25,
    unit="%",
    above=True,
    min_per_min=60,
    what="Over {threshold}% of WebSocket posts answered 410 Gone for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutgoneratespike",
)
THROTTLED = _ticket(
    cloudwatch="DeliveriesThrottled",
    prometheus="FanoutThrottled",
    threshold=1,
    unit="%",
    above=True,
    min_per_min=3,
    what="Over {threshold}% of posts were throttled (429) for {window} minutes: the API's rate limit is near",
    runbook=f"{OPS_RUNBOOK}#fanoutthrottled",
)
WORKER_NOT_READY = _page(
    cloudwatch="WorkerNotReady",
    prometheus="FanoutWorkerNotReady",
    threshold=1,
    unit="count",
    above=False,
    what="A worker reported not ready (SQS or MongoDB not answering), or none reported, for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutworkernotready",
)
PROCESS_RESTARTS = _ticket(
    cloudwatch="ProcessRestarts",
    prometheus="FanoutProcessRestarts",
    threshold=2,
    unit="count",
    above=True,
    count=True,
    what="Worker processes restarted more than {threshold} times in {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutprocessrestarts",
)
TASKS_BELOW_DESIRED = _page(
    cloudwatch="RunningTasksBelowDesired",
    prometheus=None,  # Prometheus does not see ECS
    threshold=0,
    unit="count",
    above=True,
    what="Fewer worker tasks ran than desired for {window} minutes (Container Insights)",
    runbook=f"{OPS_RUNBOOK}#fanoutrunningtasksbelowdesired",
)
ROUTE_ERRORS = _page(
    cloudwatch="RouteErrorsHigh",
    prometheus="FanoutRouteErrorsHigh",
    threshold=5,
    unit="per minute",
    above=True,
    what="The lifecycle's route handlers failed over {threshold} times a minute for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutrouteerrorshigh",
)
RECONNECT_STORM = _page(
    cloudwatch="ReconnectStorm",
    prometheus="FanoutReconnectStorm",
    threshold=50,
    unit="%",
    above=True,
    min_per_min=60,  # reconnects a minute: a storm, not a few flaky clients
    what="Over {threshold}% of connects were reconnects (and at least 60 a minute) for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutreconnectstorm",
)

OUTBOX_LAG = _page(
    cloudwatch=None,  # the relay's figures reach Prometheus only (fanout relay serves /metrics)
    prometheus="FanoutOutboxLagHigh",
    threshold=60,
    unit="s",
    above=True,
    what="The oldest outbox entry waited over {threshold} s for the relay for {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutoutboxlaghigh",
)
PUBLISH_FAILED = Alarm(
    cloudwatch=None,  # a domain service's publisher exports to that service's own registry
    prometheus="FanoutPublishFailed",
    threshold=0,
    unit="count",
    above=True,
    window_min=TICKET_WINDOW_MIN,
    severity="ticket",
    count=True,
    what="A domain service's background publisher failed to publish events within {window} minutes",
    runbook=f"{OPS_RUNBOOK}#fanoutpublishfailed",
)

ALARMS: tuple[Alarm, ...] = (
    DELIVERY_SUCCESS,
    DELIVERY_LATENCY,
    QUEUE_LAG,
    OLDEST_MESSAGE,
    DEAD_LETTERS,
    GONE_SPIKE,
    THROTTLED,
    WORKER_NOT_READY,
    PROCESS_RESTARTS,
    TASKS_BELOW_DESIRED,
    ROUTE_ERRORS,
    RECONNECT_STORM,
    OUTBOX_LAG,
    PUBLISH_FAILED,
)
# The socket side's alarms read the lifecycle Lambda's metrics: only a stack that deploys it has them.
LIFECYCLE_ALARMS = (ROUTE_ERRORS, RECONNECT_STORM)
