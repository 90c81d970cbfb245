"""One source for alarm thresholds: the CloudWatch alarms and the Prometheus rules both follow thresholds.py."""

from __future__ import annotations

import json
import re
from typing import Any

import yaml

from tests.deploy.conftest import REPO_ROOT, Synth

import alert_rules  # isort: skip - deploy/ is on sys.path through conftest, as app.py puts it
import metrics_contract as contract  # isort: skip
import thresholds as t  # isort: skip

# CloudWatch alarms whose metric is in milliseconds while the threshold is in seconds.
IN_MILLISECONDS = {"DeliveryLatencyHigh", "QueueLagHigh"}


def cloudwatch_alarms(s: Synth) -> dict[str, dict[str, Any]]:
    """The stack's own alarms (not the scaling policies') by name without the prefix."""
    return {
        a["Properties"]["AlarmName"].removeprefix("fanout-"): a["Properties"]
        for a in s.resources("AWS::CloudWatch::Alarm").values()
        if str(a["Properties"].get("AlarmName", "")).startswith("fanout-")
    }


def prometheus_rules() -> dict[str, dict[str, Any]]:
    groups = yaml.safe_load(alert_rules.ALERTS_FILE.read_text())["groups"]
    return {rule["alert"]: rule for group in groups for rule in group["rules"]}


def test_committed_rules_are_the_generated_ones() -> None:
    """deploy/prometheus/alerts.yml is exactly what alert_rules.py renders from thresholds.py."""
    assert alert_rules.render() == alert_rules.ALERTS_FILE.read_text(), "run `make deploy-alerts`"


def test_prometheus_rules_follow_the_thresholds() -> None:
    """Each alert has its threshold, window and severity from thresholds.py, and no other alert exists."""
    rules = prometheus_rules()
    expected = {a.prometheus: a for a in t.ALARMS if a.prometheus}
    assert set(expected) == set(rules)
    for name, alarm in expected.items():
        rule = rules[name]
        assert rule["labels"]["severity"] == alarm.severity, name
        assert rule.get("for") == (None if alarm.count else f"{alarm.window_min}m"), name
        value = alarm.threshold / 100 if alarm.unit == "%" else alarm.threshold
        op = ">" if alarm.above else "<"
        assert re.search(rf" {op} {value:g}$", rule["expr"], re.MULTILINE), (
            f"{name}: no `{op} {value:g}` comparison in {rule['expr']!r}"
        )
        if alarm.min_per_min:
            assert f"* 60 >= {alarm.min_per_min:g}" in rule["expr"], f"{name}: traffic guard missing"
        assert rule["annotations"]["runbook"] == alarm.runbook


def test_cloudwatch_alarms_follow_the_thresholds(default_synth: Synth) -> None:
    """Each CloudWatch alarm has its threshold, window, direction and guard from thresholds.py."""
    alarms = cloudwatch_alarms(default_synth)
    # The socket side's alarms exist where the stack deploys the lifecycle (test_api checks that it does).
    lifecycle = bool(default_synth.resources("AWS::Lambda::Function"))
    expected = {
        a.cloudwatch: a for a in t.ALARMS if a.cloudwatch and (lifecycle or a not in t.LIFECYCLE_ALARMS)
    }
    assert set(expected) == set(alarms)
    for name, alarm in expected.items():
        props = alarms[name]
        factor = 1000 if name in IN_MILLISECONDS else 1
        assert props["Threshold"] == alarm.threshold * factor, name
        assert props["ComparisonOperator"] == (
            "GreaterThanThreshold" if alarm.above else "LessThanThreshold"
        ), name
        periods = 1 if alarm.count else alarm.window_min
        assert (props["EvaluationPeriods"], props["DatapointsToAlarm"]) == (periods, periods), name
        period = props.get("Period") or next(
            q["MetricStat"]["Period"] for q in props["Metrics"] if "MetricStat" in q
        )
        assert period == (alarm.window_min * 60 if alarm.count else t.PERIOD_S), name
        assert props["AlarmDescription"].startswith(f"[{alarm.severity}] ")
        assert props["AlarmDescription"].endswith(f"Runbook: {alarm.runbook}")
        if alarm.min_per_min:
            [expr] = [q["Expression"] for q in props["Metrics"] if "Expression" in q]
            assert expr.startswith("IF(") and f">= {alarm.min_per_min:g}," in expr, f"{name}: {expr}"


def test_worker_only_stack_has_no_socket_alarms(existing_synth: Synth) -> None:
    """With an existing API the lifecycle is not ours: its alarms are left out, the worker's all stay."""
    names = set(cloudwatch_alarms(existing_synth))
    lifecycle = {a.cloudwatch for a in t.LIFECYCLE_ALARMS}
    assert not names & lifecycle
    assert names == {a.cloudwatch for a in t.ALARMS if a.cloudwatch} - lifecycle


def test_scaling_steps_start_at_the_oldest_message_threshold(default_synth: Synth) -> None:
    """The step policy scales out from the age the OldestMessageOld alarm names."""
    [upper] = [
        a["Properties"]
        for key, a in default_synth.resources("AWS::CloudWatch::Alarm").items()
        if "OldestMessageAgeUpper" in key
    ]
    assert upper["MetricName"] == "ApproximateAgeOfOldestMessage"
    assert upper["Threshold"] == t.OLDEST_MESSAGE.threshold


def test_grafana_threshold_lines_are_the_alarms() -> None:
    """The Grafana panels of the socket-side alarms draw their line at the alarm's threshold."""
    dashboard = json.loads((REPO_ROOT / "deploy" / "grafana" / "fanout.json").read_text())
    lines = {
        panel["title"]: [
            s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"] if s["value"]
        ]
        for panel in dashboard["panels"]
        if "thresholds" in panel.get("fieldConfig", {}).get("defaults", {})
    }
    assert lines == {
        "Reconnect rate": [t.RECONNECT_STORM.threshold / 100],  # a ratio panel (percentunit)
        "Route errors per minute by route": [t.ROUTE_ERRORS.threshold],
    }


# Posts each ratio is taken over: an expired event, or one in a payload version the client does not speak,
# was never posted, and a 410 client left by itself.
JUDGED = set(contract.DELIVERY_OUTCOMES) - {"gone", "expired", "unsupported_version"}
RATIO_OVER = {
    ("DeliverySuccessLow", "FanoutDeliverySuccessLow"): JUDGED,
    ("DeliveriesThrottled", "FanoutThrottled"): JUDGED,
    ("GoneRateSpike", "FanoutGoneRateSpike"): set(contract.DELIVERY_OUTCOMES) - set(t.NOT_POSTED),
}


def _prometheus_denominator(expr: str) -> set[str]:
    """The outcomes the ratio's denominator selects (PromQL regex matchers are anchored, as fullmatch)."""
    selectors = re.findall(r'fanout_deliveries_total\{outcome!~"([^"]+)"\}', expr)
    assert selectors, expr
    [regex] = set(selectors)  # the traffic guard reads the same posts
    return {o for o in contract.DELIVERY_OUTCOMES if not re.fullmatch(regex, o)}


def test_expired_posts_are_no_failures(default_synth: Synth) -> None:
    """Delivery success and throttling are judged over posts without 410s and expired events, the gone ratio
    over posts without expired events, in CloudWatch and in Prometheus alike."""
    alarms = cloudwatch_alarms(default_synth)
    rules = prometheus_rules()
    for (cloudwatch, prometheus), outcomes in RATIO_OVER.items():
        read = {
            dim["Value"]
            for q in alarms[cloudwatch]["Metrics"]
            if "MetricStat" in q
            for dim in q["MetricStat"]["Metric"].get("Dimensions", [])
            if dim["Name"] == "Outcome"
        }
        assert outcomes == read, cloudwatch
        assert outcomes == _prometheus_denominator(rules[prometheus]["expr"]), prometheus


def test_every_alarm_has_a_runbook_section() -> None:
    """Each alarm, CloudWatch-only ones included, points at a `#### Fanout...` section of docs/operations.md."""
    headings = {
        line[5:].strip().lower(): line[5:].strip()
        for line in (REPO_ROOT / "docs" / "operations.md").read_text().splitlines()
        if line.startswith("#### ")
    }
    for alarm in t.ALARMS:
        path, anchor = alarm.runbook.split("#")
        assert path == "docs/operations.md", alarm.runbook
        assert anchor in headings, f"{alarm.cloudwatch or alarm.prometheus}: no section for #{anchor}"
        assert headings[anchor].startswith("Fanout"), headings[anchor]


def test_readme_counts_the_alarms_the_stacks_make(default_synth: Synth, existing_synth: Synth) -> None:
    """deploy/README.md's resource table splits the alarms into those of thresholds.py and the scaling
    policy's, for the whole layer and the worker alone: the counts are those synthesized."""
    text = (REPO_ROOT / "deploy" / "README.md").read_text()
    whole = re.search(
        r"`AWS::CloudWatch::Alarm` \| (\d+) \| (\d+) from `thresholds.py` \+ the step-scaling", text
    )
    alone = re.search(r"(\d+) alarms \(no socket-side ones\) \+ (\d+) scaling alarms?,", text)
    assert whole and alone
    for synth, (total, ours) in ((default_synth, (whole[1], whole[2])), (existing_synth, (None, alone[1]))):
        alarms = synth.resources("AWS::CloudWatch::Alarm")
        named = len(cloudwatch_alarms(synth))
        assert int(ours) == named
        assert (int(total) if total else named + int(alone[2])) == len(alarms)
