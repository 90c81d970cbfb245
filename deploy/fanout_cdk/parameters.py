"""The stack's inputs: every CDK context value (``-c key=value`` or ``cdk.json``), read and checked once.

All have defaults so that ``cdk synth`` works with no AWS account; the dummy ones are flagged with a synth
warning and must be given for a real deployment.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Annotations, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

# Context parameters: name -> (default, description). A default of None means "optional"; the dummy ones
# (DUMMY) let `cdk synth` run without an account and are reported as warnings.
DUMMY_API_ID = "abcdef1234"
DUMMY_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fanout/mongo-uri-AbCdEf"  # noqa: S105
PARAMETERS: dict[str, tuple[str | None, str]] = {
    "apiId": (DUMMY_API_ID, "id of the existing API Gateway WebSocket API"),
    "stage": ("production", "its stage name"),
    "mongoSecretArn": (DUMMY_SECRET_ARN, "Secrets Manager secret (full ARN) holding the MongoDB URI"),
    "mongoSecretField": (None, "JSON key of the URI inside the secret; omit when the secret is the URI"),
    "mongoDb": ("fanout", "MongoDB database name (FANOUT_MONGO_DB)"),
    "managementEndpoint": (None, "override https://{domainName}/{stage} (FANOUT_MANAGEMENT_ENDPOINT)"),
    "vpcId": (None, "existing VPC id; omit to create a VPC"),
    "subnetIds": (None, "comma-separated private subnet ids for the tasks (required with vpcId)"),
    "clusterName": (None, "existing ECS cluster name (in that VPC); omit to create a cluster"),
    "image": (None, "container image URI; omit to build the repository's Dockerfile as a CDK asset"),
    "namePrefix": ("fanout", "prefix of the queue, DLQ, topic, service, log group and dashboard names"),
    "publisherPolicyName": ("FanoutPublisherPolicy", "name of the managed policy publishers attach"),
    "cpu": ("1024", "task vCPU units (1024 = 1 vCPU)"),
    "memory": ("2048", "task memory, MiB"),
    "processes": (None, "worker processes per task (`fanout worker --processes`); default cpu / 1024"),
    "minTasks": ("1", "autoscaling minimum task count"),
    "maxTasks": ("10", "autoscaling maximum task count"),
    "backlogPerTask": ("200", "target visible messages per running task (size it from `make bench`)"),
    "alarmTopicArn": (None, "SNS topic for alarm notifications; omit to create one"),
    "logRetentionDays": ("30", "CloudWatch Logs retention of the worker's log group"),
}
DUMMY_DEFAULTS = {"apiId", "mongoSecretArn"}

_RETENTION = {
    1: "ONE_DAY",
    3: "THREE_DAYS",
    5: "FIVE_DAYS",
    7: "ONE_WEEK",
    14: "TWO_WEEKS",
    30: "ONE_MONTH",
    60: "TWO_MONTHS",
    90: "THREE_MONTHS",
    180: "SIX_MONTHS",
    365: "ONE_YEAR",
}


@dataclass(frozen=True)
class Params:
    """The context values, defaults applied; ``defaulted`` names those not given."""

    values: dict[str, str | None]
    defaulted: frozenset[str]

    @classmethod
    def from_context(cls, scope: Construct) -> Params:
        values: dict[str, str | None] = {}
        defaulted: set[str] = set()
        for key, (default, _) in PARAMETERS.items():
            given = scope.node.try_get_context(key)
            if given in (None, ""):
                values[key] = default
                defaulted.add(key)
            else:
                values[key] = str(given)
        return cls(values, frozenset(defaulted))

    def get(self, key: str) -> str | None:
        return self.values[key]

    def req(self, key: str) -> str:
        value = self.values[key]
        if value is None:
            raise ValueError(f"context parameter {key!r} is required")
        return value

    def integer(self, key: str) -> int:
        try:
            return int(self.req(key))
        except ValueError as exc:
            raise ValueError(
                f"context parameter {key!r} must be an integer, got {self.values[key]!r}"
            ) from exc

    def retention(self, key: str) -> logs.RetentionDays:
        """A log retention in days, one of those CloudWatch Logs offers."""
        days = self.integer(key)
        if days not in _RETENTION:
            raise ValueError(f"{key} must be one of {sorted(_RETENTION)}, got {days}")
        return logs.RetentionDays[_RETENTION[days]]

    def warn_dummies(self, stack: Stack) -> None:
        """A synth warning for every required parameter left at its dummy value."""
        for key in sorted(DUMMY_DEFAULTS & self.defaulted):
            Annotations.of(stack).add_warning_v2(
                f"fanout:dummy-{key}",
                f"context parameter {key!r} not given: using a dummy value; pass -c {key}=... to deploy",
            )
