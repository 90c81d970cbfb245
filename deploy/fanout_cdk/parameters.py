"""The stack's inputs: every CDK context value (``-c key=value`` or ``cdk.json``), read and checked once.

All have defaults so that ``make deploy-synth`` works with no AWS account; the dummy secret ARNs (in the
example account 123456789012) are flagged with a synth warning there, and refused when the cdk CLI runs the
app (``cdk synth``, ``diff``, ``deploy``): see ``Params.check_placeholders``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aws_cdk import Annotations, Stack
from aws_cdk import aws_logs as logs
from constructs import Construct

# Context parameters: name -> (default, description). A default of None means "optional"; the dummy ones
# (DUMMY, in PLACEHOLDER_ACCOUNT) let `make deploy-synth` run without an account and are reported as
# warnings; the cdk CLI refuses them.
PLACEHOLDER_ACCOUNT = "123456789012"  # the example account of AWS's documentation, and of the dummies
DUMMY_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fanout/mongo-uri-AbCdEf"  # noqa: S105
DUMMY_JWT_SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fanout/jwt-key-AbCdEf"  # noqa: S105
PARAMETERS: dict[str, tuple[str | None, str]] = {
    "apiId": (
        None,
        "id of an existing API Gateway WebSocket API: deploy the worker alone for it; omit to "
        "create the API and its lifecycle Lambda",
    ),
    "stage": ("production", "the API's stage name"),
    "mongoSecretArn": (DUMMY_SECRET_ARN, "Secrets Manager secret (full ARN) holding the MongoDB URI"),
    "mongoSecretField": (None, "JSON key of the URI inside the secret; omit when the secret is the URI"),
    "mongoDb": ("fanout", "MongoDB database name (FANOUT_MONGO_DB)"),
    "jwtSecretArn": (
        DUMMY_JWT_SECRET_ARN,
        "Secrets Manager secret (full ARN) holding the connect-token key "
        "(HS256, at least 32 bytes) that the lifecycle Lambda verifies; with a new API only",
    ),
    "jwtAudience": (None, "expected `aud` of connect tokens (FANOUT_JWT_AUDIENCE); with a new API only"),
    "throttleRate": ("1000", "the new API's stage: steady requests/s (connects and messages) across clients"),
    "throttleBurst": ("2000", "the new API's stage: burst of requests above the steady rate"),
    "domainName": (
        None,
        "custom domain name for the new API (with certificateArn); point its DNS at the "
        "WebSocketDomainTarget output",
    ),
    "certificateArn": (None, "ACM certificate for domainName, in the stack's region"),
    "apiGatewayLogsRole": (
        "true",
        "true: set the account's API Gateway CloudWatch Logs role, which the "
        "stage's access log needs (once per account and region; retained on delete); "
        "false when the account has one",
    ),
    "managementEndpoint": (
        None,
        "override the management API endpoint (FANOUT_MANAGEMENT_ENDPOINT); "
        "default: the new API's https://{apiId}.execute-api.{region}.amazonaws.com/{stage}, "
        "or https://{domainName}/{stage} of each connection record with an existing API",
    ),
    "vpcId": (None, "existing VPC id; omit to create a VPC"),
    "subnetIds": (
        None,
        "comma-separated private subnet ids for the tasks and the Lambda (required with vpcId)",
    ),
    "clusterName": (None, "existing ECS cluster name (in that VPC); omit to create a cluster"),
    "image": (None, "container image URI; omit to build the repository's Dockerfile as a CDK asset"),
    "namePrefix": (
        "fanout",
        "prefix of the queue, DLQ, topic, service, function, log group and dashboard names",
    ),
    "publisherPolicyName": ("FanoutPublisherPolicy", "name of the managed policy publishers attach"),
    "cpu": ("1024", "task vCPU units (1024 = 1 vCPU)"),
    "memory": ("2048", "task memory, MiB"),
    "processes": (None, "worker processes per task (`fanout worker --processes`); default cpu / 1024"),
    "minTasks": ("1", "autoscaling minimum task count"),
    "maxTasks": ("10", "autoscaling maximum task count"),
    "backlogPerTask": ("200", "target visible messages per running task (size it from `make bench`)"),
    "alarmTopicArn": (None, "SNS topic for alarm notifications; omit to create one"),
    "logRetentionDays": ("30", "CloudWatch Logs retention of the worker's, the Lambda's and the API's logs"),
}
INTEGERS = ("cpu", "memory", "minTasks", "maxTasks", "backlogPerTask", "throttleRate", "throttleBurst")
# A complete secret ARN ends in Secrets Manager's 6-character suffix; a partial one does not.
COMPLETE_SECRET_ARN = re.compile(r"-[A-Za-z0-9]{6}$")
API_ID = re.compile(r"[a-z0-9]{10}")
# A stage name as API Gateway allows it (and the worker's records carry it): it goes into the task role's
# @connections ARN, where `*` or `?` would widen the grant to other stages.
STAGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
# A secret's ARN, complete or partial, whose name has only the characters Secrets Manager allows: it goes
# into the roles' GetSecretValue resources, where `*` or `?` would grant other secrets of the account.
SECRET_ARN = re.compile(r"arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:\d{12}:secret:[A-Za-z0-9/_+=.@-]+")

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

    def flag(self, key: str) -> bool:
        """A true/false parameter."""
        value = self.req(key).lower()
        if value not in ("true", "false"):
            raise ValueError(f"context parameter {key!r} must be true or false, got {value!r}")
        return value == "true"

    @property
    def creates_api(self) -> bool:
        """No apiId given: the stack creates the WebSocket API and its lifecycle Lambda."""
        return self.values["apiId"] is None

    def check(self) -> None:
        """Refuse malformed values before any resource is made."""
        for key in INTEGERS:
            self.integer(key)
        if self.get("processes") and self.integer("processes") < 1:  # the worker refuses --processes 0
            processes = self.get("processes")
            raise ValueError(f"context parameter 'processes' must be at least 1, got {processes!r}")
        self.retention("logRetentionDays")
        self.flag("apiGatewayLogsRole")
        if bool(self.get("domainName")) != bool(self.get("certificateArn")):
            raise ValueError("context parameters 'domainName' and 'certificateArn' go together")
        api_id = self.get("apiId")
        if api_id is not None and not API_ID.fullmatch(api_id):
            raise ValueError(f"apiId {api_id!r} is not an API Gateway id (10 lowercase letters or digits)")
        stage = self.req("stage")
        if not STAGE.fullmatch(stage):
            raise ValueError(f"stage {stage!r} is not an API Gateway stage name (letters, digits, _ and -)")
        for key in ("mongoSecretArn", *(("jwtSecretArn",) if self.creates_api else ())):
            arn = self.req(key)
            if not SECRET_ARN.fullmatch(arn):
                raise ValueError(
                    f"context parameter {key!r} must be a secret's ARN "
                    f"(arn:aws:secretsmanager:REGION:ACCOUNT:secret:NAME), got {arn!r}"
                )

    def retention(self, key: str) -> logs.RetentionDays:
        """A log retention in days, one of those CloudWatch Logs offers."""
        days = self.integer(key)
        if days not in _RETENTION:
            raise ValueError(f"{key} must be one of {sorted(_RETENTION)}, got {days}")
        return logs.RetentionDays[_RETENTION[days]]

    def placeholders(self) -> list[str]:
        """The secret ARNs the stack reads (the token key's only with a new API) that are in
        ``PLACEHOLDER_ACCOUNT``: left at their dummy default, or an example copied. After ``check``."""
        keys = ("mongoSecretArn", *(("jwtSecretArn",) if self.creates_api else ()))
        return [key for key in keys if self.req(key).split(":")[4] == PLACEHOLDER_ACCOUNT]

    def check_placeholders(self, stack: Stack, deploying: bool) -> None:
        """Placeholder secret ARNs: refused when ``deploying`` (a production synth: the cdk CLI runs the
        app), a synth warning each otherwise (``make deploy-synth``, the tests)."""
        found = self.placeholders()
        if found and deploying:
            given = " ".join(f"-c {key}=arn:aws:secretsmanager:..." for key in found)
            raise ValueError(
                f"placeholder secret ARNs (account {PLACEHOLDER_ACCOUNT}) cannot be deployed: "
                f"{', '.join(found)}; pass the real secrets' ARNs ({given})"
            )
        for key in found:
            what = "not given: using a dummy value" if key in self.defaulted else "is a dummy value"
            Annotations.of(stack).add_warning_v2(
                f"fanout:dummy-{key}",
                f"context parameter {key!r} {what} (account {PLACEHOLDER_ACCOUNT}); "
                f"pass -c {key}=... to deploy",
            )
