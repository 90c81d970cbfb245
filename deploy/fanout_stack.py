"""The fanout stack: events queue + DLQ, SNS topic, the Fargate worker service, least-privilege roles,
backlog autoscaling, a dashboard, alarms, and the managed policy that domain services attach to publish.

Every input is a CDK context value (``-c key=value`` or ``cdk.json``), listed in ``PARAMETERS``. All have
defaults so that ``cdk synth`` works with no AWS account; the dummy ones are flagged with a synth warning
and must be given for a real deployment.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import (
    Annotations,
    ArnFormat,
    Aws,
    CfnOutput,
    Duration,
    RemovalPolicy,
    Size,
    Stack,
    Token,
)
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_cloudwatch_actions as cw_actions
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subs
from aws_cdk import aws_sqs as sqs
from constructs import Construct
from metrics_contract import DELIVERY_OUTCOMES, METRICS, NAMESPACE  # deploy/ is on sys.path (see app.py)

REPO_ROOT = Path(__file__).resolve().parent.parent

# One source for the timing settings the worker and ECS must agree on.
SHUTDOWN_BUDGET_S = 20  # FANOUT_SHUTDOWN_BUDGET_S: SIGTERM -> in-flight events finished or released
STOP_TIMEOUT_S = SHUTDOWN_BUDGET_S + 10  # ECS waits this long after SIGTERM before SIGKILL (Fargate max 120)
VISIBILITY_TIMEOUT_S = 30  # FANOUT_VISIBILITY_TIMEOUT_S and the queue's own visibility timeout
MAX_RECEIVE_COUNT = 5  # receives before SQS moves a message to the DLQ by itself
QUEUE_RETENTION = Duration.days(4)
DLQ_RETENTION = Duration.days(14)
METRICS_PORT = 9400
HEALTH_CHECK_COMMAND = [
    "CMD",
    "python",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/healthz', timeout=4)",
]

# Alarm thresholds.
DELIVERY_SUCCESS_MIN_PERCENT = 99.0
DELIVERY_LATENCY_P95_MAX_MS = 1000
OLDEST_MESSAGE_MAX_S = 60
THROTTLED_MAX_PERCENT = 1.0
# Deliveries outcomes left out of the success ratio's denominator: `gone` (410) is a client that left
# without a $disconnect; its record is pruned, and no retry or fix on our side could deliver it.
SUCCESS_RATIO_EXCLUDED_OUTCOMES = ("gone",)

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


@dataclass(frozen=True)
class Params:
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


class FanoutStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        p = Params.from_context(self)
        for key in sorted(DUMMY_DEFAULTS & p.defaulted):
            Annotations.of(self).add_warning_v2(
                f"fanout:dummy-{key}",
                f"context parameter {key!r} not given: using a dummy value; pass -c {key}=... to deploy",
            )
        prefix = p.req("namePrefix")
        api_id, stage = p.req("apiId"), p.req("stage")
        if not re.fullmatch(r"[a-z0-9]{10}", api_id) and not Token.is_unresolved(api_id):
            raise ValueError(f"apiId {api_id!r} is not an API Gateway id (10 lowercase letters or digits)")

        # ---- queues and topic ------------------------------------------------------------------------
        self.dlq = sqs.Queue(
            self,
            "DeadLetterQueue",
            queue_name=f"{prefix}-events-dlq",
            retention_period=DLQ_RETENTION,
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
        )
        self.queue = sqs.Queue(
            self,
            "EventsQueue",
            queue_name=f"{prefix}-events",
            visibility_timeout=Duration.seconds(VISIBILITY_TIMEOUT_S),
            retention_period=QUEUE_RETENTION,
            receive_message_wait_time=Duration.seconds(20),
            encryption=sqs.QueueEncryption.SQS_MANAGED,
            enforce_ssl=True,
            dead_letter_queue=sqs.DeadLetterQueue(max_receive_count=MAX_RECEIVE_COUNT, queue=self.dlq),
        )
        self.topic = sns.Topic(
            self,
            "EventsTopic",
            topic_name=f"{prefix}-events",
            master_key=kms.Alias.from_alias_name(self, "SnsAwsManagedKey", "alias/aws/sns"),
            enforce_ssl=True,
        )
        self.topic.add_subscription(subs.SqsSubscription(self.queue, raw_message_delivery=True))

        # ---- publisher policy (attached by domain services' roles) -------------------------------------
        self.publisher_policy = iam.ManagedPolicy(
            self,
            "FanoutPublisherPolicy",
            managed_policy_name=p.req("publisherPolicyName"),
            description="Publish fanout events: SendMessage to the events queue, Publish to the events topic",
            statements=[
                # GetQueueUrl: fanout.publish.Publisher looks the URL up when given only the queue name.
                iam.PolicyStatement(
                    sid="SendEvents",
                    actions=["sqs:SendMessage", "sqs:GetQueueUrl"],
                    resources=[self.queue.queue_arn],
                ),
                iam.PolicyStatement(
                    sid="PublishEvents", actions=["sns:Publish"], resources=[self.topic.topic_arn]
                ),
            ],
        )

        # ---- network and cluster -----------------------------------------------------------------------
        vpc_id, cluster_name = p.get("vpcId"), p.get("clusterName")
        subnets: ec2.SubnetSelection | None = None
        if vpc_id:
            subnet_ids = [s.strip() for s in (p.get("subnetIds") or "").split(",") if s.strip()]
            if not subnet_ids:
                raise ValueError("context parameter 'subnetIds' is required with 'vpcId'")
            vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
                self,
                "Vpc",
                vpc_id=vpc_id,
                availability_zones=[f"az{i}" for i in range(len(subnet_ids))],
                private_subnet_ids=subnet_ids,
            )
            subnets = ec2.SubnetSelection(
                subnets=[ec2.Subnet.from_subnet_id(self, f"Subnet{i}", s) for i, s in enumerate(subnet_ids)]
            )
        else:
            vpc = ec2.Vpc(
                self,
                "Vpc",
                max_azs=2,
                nat_gateways=1,
                subnet_configuration=[
                    ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24),
                    ec2.SubnetConfiguration(
                        name="workers", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                    ),
                ],
            )
            subnets = ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        if cluster_name:
            cluster: ecs.ICluster = ecs.Cluster.from_cluster_attributes(
                self, "Cluster", cluster_name=cluster_name, vpc=vpc
            )
        else:
            cluster = ecs.Cluster(
                self, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED
            )

        # ---- roles -------------------------------------------------------------------------------------
        self.task_role = iam.Role(
            self,
            "TaskRole",
            assumed_by=iam.ServicePrincipal("ecs-tasks.amazonaws.com"),
            description="fanout worker: consume the events queue, post to the WebSocket API's connections",
        )
        connections_arns = [
            self.format_arn(
                service="execute-api",
                resource=api_id,
                resource_name=f"{stage}/{method}/@connections/*",
                arn_format=ArnFormat.SLASH_RESOURCE_NAME,
            )
            for method in ("POST", "GET", "DELETE")
        ]
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ManageConnections", actions=["execute-api:ManageConnections"], resources=connections_arns
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="ConsumeEvents",
                actions=[
                    "sqs:ReceiveMessage",
                    "sqs:DeleteMessage",
                    "sqs:ChangeMessageVisibility",
                    "sqs:GetQueueAttributes",
                    "sqs:GetQueueUrl",
                ],
                resources=[self.queue.queue_arn],
            )
        )
        self.task_role.add_to_policy(
            iam.PolicyStatement(
                sid="SendRemaindersAndDeadLetters",
                actions=["sqs:SendMessage"],
                resources=[self.queue.queue_arn, self.dlq.queue_arn],
            )
        )
        # The execution role (ECS's own: pull the image, write logs, inject the secret) is made by CDK
        # with grants scoped to this log group, this secret and the image's repository.
        secret_arn = p.req("mongoSecretArn")
        mongo_secret = (
            secretsmanager.Secret.from_secret_complete_arn(self, "MongoUriSecret", secret_arn)
            if re.search(r"-[A-Za-z0-9]{6}$", secret_arn)
            else secretsmanager.Secret.from_secret_partial_arn(self, "MongoUriSecret", secret_arn)
        )

        # ---- task definition and service --------------------------------------------------------------
        self.log_group = logs.LogGroup(
            self,
            "WorkerLogs",
            log_group_name=f"/ecs/{prefix}-worker",
            retention=_retention(p.integer("logRetentionDays")),
            removal_policy=RemovalPolicy.RETAIN,
        )
        task = ecs.FargateTaskDefinition(
            self,
            "WorkerTask",
            cpu=p.integer("cpu"),
            memory_limit_mib=p.integer("memory"),
            task_role=self.task_role,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        image_uri = p.get("image")
        image = (
            ecs.ContainerImage.from_registry(image_uri)
            if image_uri
            else ecs.ContainerImage.from_asset(
                str(REPO_ROOT), file="Dockerfile", platform=ecr_assets.Platform.LINUX_AMD64
            )
        )
        environment = {
            "FANOUT_ENV": "production",
            "FANOUT_REGION": Aws.REGION,
            "FANOUT_QUEUE_URL": self.queue.queue_url,
            "FANOUT_QUEUE_NAME": self.queue.queue_name,
            "FANOUT_DLQ_URL": self.dlq.queue_url,
            "FANOUT_DLQ_NAME": self.dlq.queue_name,
            "FANOUT_TOPIC_ARN": self.topic.topic_arn,
            "FANOUT_MONGO_DB": p.req("mongoDb"),
            "FANOUT_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
            "FANOUT_SHUTDOWN_BUDGET_S": str(SHUTDOWN_BUDGET_S),
            "FANOUT_METRICS_HOST": "0.0.0.0",
            "FANOUT_METRICS_PORT": str(METRICS_PORT),
            "FANOUT_CLOUDWATCH_EMF": "true",
            "FANOUT_CLOUDWATCH_NAMESPACE": NAMESPACE,
            "FANOUT_LOG_FORMAT": "json",
        }
        if p.get("managementEndpoint"):
            environment["FANOUT_MANAGEMENT_ENDPOINT"] = p.req("managementEndpoint")
        # Explicit: inside a Fargate task os.cpu_count() can report the host's CPUs, not the task's share.
        processes = p.integer("processes") if p.get("processes") else max(1, p.integer("cpu") // 1024)
        command = ["worker", "--processes", str(processes)]
        self.container = task.add_container(
            "worker",
            image=image,
            command=command,
            essential=True,
            environment=environment,
            secrets={
                "FANOUT_MONGO_URI": ecs.Secret.from_secrets_manager(mongo_secret, p.get("mongoSecretField"))
            },
            port_mappings=[ecs.PortMapping(container_port=METRICS_PORT, name="metrics")],
            health_check=ecs.HealthCheck(
                command=HEALTH_CHECK_COMMAND,
                interval=Duration.seconds(30),
                timeout=Duration.seconds(5),
                retries=3,
                start_period=Duration.seconds(30),
            ),
            stop_timeout=Duration.seconds(STOP_TIMEOUT_S),
            readonly_root_filesystem=False,
            logging=ecs.LogDrivers.aws_logs(
                stream_prefix="worker",
                log_group=self.log_group,
                mode=ecs.AwsLogDriverMode.NON_BLOCKING,
                max_buffer_size=Size.mebibytes(25),
            ),
        )
        self.service = ecs.FargateService(
            self,
            "WorkerService",
            cluster=cluster,
            task_definition=task,
            service_name=f"{prefix}-worker",
            desired_count=p.integer("minTasks"),
            vpc_subnets=subnets,
            assign_public_ip=False,
            min_healthy_percent=100,
            max_healthy_percent=200,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            enable_execute_command=False,
        )

        # ---- autoscaling on backlog ------------------------------------------------------------------
        self._autoscaling(p, cluster, prefix)

        # ---- alarms and dashboard ----------------------------------------------------------------------
        alarm_topic_arn = p.get("alarmTopicArn")
        self.alarm_topic = (
            sns.Topic.from_topic_arn(self, "AlarmTopic", alarm_topic_arn)
            if alarm_topic_arn
            else sns.Topic(self, "AlarmTopic", topic_name=f"{prefix}-alarms", enforce_ssl=True)
        )
        self.alarms = self._alarms(prefix, cluster)
        self._dashboard(prefix, cluster)

        # ---- outputs -----------------------------------------------------------------------------------
        for name, value, what in [
            ("QueueUrl", self.queue.queue_url, "events queue URL (FANOUT_QUEUE_URL for publishers)"),
            ("QueueArn", self.queue.queue_arn, "events queue ARN"),
            ("DeadLetterQueueUrl", self.dlq.queue_url, "dead-letter queue URL"),
            ("TopicArn", self.topic.topic_arn, "events topic ARN (FANOUT_TOPIC_ARN for publishers)"),
            ("PublisherPolicyArn", self.publisher_policy.managed_policy_arn, "attach to publishing roles"),
            ("AlarmTopicArn", self.alarm_topic.topic_arn, "alarm notifications"),
            ("ServiceName", self.service.service_name, "ECS service"),
        ]:
            CfnOutput(self, name, value=value, description=what, export_name=f"{self.stack_name}-{name}")

    # ------------------------------------------------------------------------------------------------------
    def _running_tasks(self, cluster: ecs.ICluster, statistic: str = "Average") -> cw.Metric:
        return cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="RunningTaskCount",
            dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": self.service.service_name},
            statistic=statistic,
            period=Duration.minutes(1),
        )

    def _desired_tasks(self, cluster: ecs.ICluster) -> cw.Metric:
        return cw.Metric(
            namespace="ECS/ContainerInsights",
            metric_name="DesiredTaskCount",
            dimensions_map={"ClusterName": cluster.cluster_name, "ServiceName": self.service.service_name},
            statistic="Average",
            period=Duration.minutes(1),
        )

    def _autoscaling(self, p: Params, cluster: ecs.ICluster, prefix: str) -> None:
        scaling = self.service.auto_scale_task_count(
            min_capacity=p.integer("minTasks"), max_capacity=p.integer("maxTasks")
        )
        # Target tracking on backlog per task: visible messages / running tasks (Container Insights).
        backlog = cw.MathExpression(
            expression="visible / IF(running > 0, running, 1)",
            using_metrics={
                "visible": self.queue.metric_approximate_number_of_messages_visible(
                    statistic="Average", period=Duration.minutes(1)
                ),
                "running": self._running_tasks(cluster),
            },
            label="Backlog per task",
            period=Duration.minutes(1),
        )
        scaling.scale_to_track_custom_metric(
            "BacklogPerTask",
            metric=self.queue.metric_approximate_number_of_messages_visible(),  # replaced just below
            target_value=p.integer("backlogPerTask"),
            scale_in_cooldown=Duration.seconds(300),
            scale_out_cooldown=Duration.seconds(60),
        )
        [policy] = [
            c
            for c in self.service.node.find_all()
            if isinstance(c, appscaling.TargetTrackingScalingPolicy) and c.node.id == "BacklogPerTask"
        ]
        _use_metric_math(policy, backlog)
        # Step scaling on the oldest message's age: scale out hard when events wait, whatever the depth.
        scaling.scale_on_metric(
            "OldestMessageAge",
            metric=self.queue.metric_approximate_age_of_oldest_message(
                statistic="Maximum", period=Duration.minutes(1)
            ),
            scaling_steps=[
                appscaling.ScalingInterval(upper=OLDEST_MESSAGE_MAX_S // 2, change=0),
                appscaling.ScalingInterval(lower=OLDEST_MESSAGE_MAX_S, change=+1),
                appscaling.ScalingInterval(lower=OLDEST_MESSAGE_MAX_S * 5, change=+3),
            ],
            adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
            cooldown=Duration.seconds(120),
            evaluation_periods=2,
            datapoints_to_alarm=2,
        )

    def _fanout_metric(
        self,
        name: str,
        statistic: str,
        dimensions: dict[str, str] | None = None,
        period_s: int = 60,
        label: str | None = None,
    ) -> cw.Metric:
        """A metric of the worker's contract; refuses names and dimension sets the worker does not emit."""
        spec = METRICS[name]
        dims = dimensions or {}
        if tuple(sorted(dims)) not in {tuple(sorted(s)) for s in spec.dimension_sets}:
            raise ValueError(f"{name} is not emitted with dimensions {sorted(dims)}")
        if "Outcome" in dims and dims["Outcome"] not in spec.outcomes:
            raise ValueError(f"{name} has no outcome {dims['Outcome']!r}")
        return cw.Metric(
            namespace=NAMESPACE,
            metric_name=name,
            dimensions_map=dims or None,
            statistic=statistic,
            period=Duration.seconds(period_s),
            label=label,
        )

    def _delivery_ratio(self, numerator: tuple[str, ...], label: str) -> cw.MathExpression:
        outcomes = [o for o in DELIVERY_OUTCOMES if o not in SUCCESS_RATIO_EXCLUDED_OUTCOMES]
        using = {o: self._fanout_metric("Deliveries", "Sum", {"Outcome": o}) for o in outcomes}
        total = " + ".join(f"FILL({o}, 0)" for o in outcomes)
        part = " + ".join(f"FILL({o}, 0)" for o in numerator)
        return cw.MathExpression(
            expression=f"100 * ({part}) / ({total})",
            using_metrics=using,
            label=label,
            period=Duration.minutes(1),
        )

    def _alarms(self, prefix: str, cluster: ecs.ICluster) -> list[cw.Alarm]:
        action = cw_actions.SnsAction(self.alarm_topic)
        specs: list[tuple[str, str, cw.IMetric, float, cw.ComparisonOperator, int, cw.TreatMissingData]] = [
            (
                "DeliverySuccessLow",
                f"Under {DELIVERY_SUCCESS_MIN_PERCENT}% of WebSocket posts succeeded for 5 minutes (410 gone "
                "excluded)",
                self._delivery_ratio(("ok",), "Delivery success %"),
                DELIVERY_SUCCESS_MIN_PERCENT,
                cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                5,
                cw.TreatMissingData.NOT_BREACHING,
            ),
            (
                "DeliveryLatencyHigh",
                f"p95 of sentAt to post acknowledged over {DELIVERY_LATENCY_P95_MAX_MS} ms for 5 minutes",
                self._fanout_metric("DeliveryLatency", "p95"),
                DELIVERY_LATENCY_P95_MAX_MS,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                5,
                cw.TreatMissingData.NOT_BREACHING,
            ),
            (
                "DeadLetters",
                "Messages are waiting in the dead-letter queue: inspect with `fanout dlq inspect`",
                self.dlq.metric_approximate_number_of_messages_visible(
                    statistic="Maximum", period=Duration.minutes(1)
                ),
                0,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                1,
                cw.TreatMissingData.NOT_BREACHING,
            ),
            (
                "OldestMessageOld",
                f"The oldest event has waited over {OLDEST_MESSAGE_MAX_S} s in the queue for 3 minutes",
                self.queue.metric_approximate_age_of_oldest_message(
                    statistic="Maximum", period=Duration.minutes(1)
                ),
                OLDEST_MESSAGE_MAX_S,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                3,
                cw.TreatMissingData.NOT_BREACHING,
            ),
            (
                "DeliveriesThrottled",
                f"Over {THROTTLED_MAX_PERCENT}% of posts were throttled (429) for 5 minutes: the API's "
                "account rate limit is near",
                self._delivery_ratio(("throttled",), "Throttled %"),
                THROTTLED_MAX_PERCENT,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                5,
                cw.TreatMissingData.NOT_BREACHING,
            ),
            (
                "WorkerNotReady",
                "A worker task has reported not ready (SQS or MongoDB not answering), or no task reports",
                self._fanout_metric("Ready", "Minimum"),
                1,
                cw.ComparisonOperator.LESS_THAN_THRESHOLD,
                3,
                cw.TreatMissingData.BREACHING,
            ),
            (
                "RunningTasksBelowDesired",
                "Fewer worker tasks run than desired for 5 minutes (needs Container Insights on the cluster)",
                cw.MathExpression(
                    expression="desired - running",
                    using_metrics={
                        "desired": self._desired_tasks(cluster),
                        "running": self._running_tasks(cluster),
                    },
                    label="Missing tasks",
                    period=Duration.minutes(1),
                ),
                0,
                cw.ComparisonOperator.GREATER_THAN_THRESHOLD,
                5,
                cw.TreatMissingData.NOT_BREACHING,
            ),
        ]
        alarms = []
        for name, description, metric, threshold, op, periods, missing in specs:
            alarm = metric.create_alarm(
                self,
                name,
                alarm_name=f"{prefix}-{name}",
                alarm_description=description,
                threshold=threshold,
                comparison_operator=op,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                treat_missing_data=missing,
            )
            alarm.add_alarm_action(action)
            alarm.add_ok_action(action)
            alarms.append(alarm)
        return alarms

    def _dashboard(self, prefix: str, cluster: ecs.ICluster) -> cw.Dashboard:
        m = self._fanout_metric
        by_outcome = [m("Events", "Sum", {"Outcome": o}, label=o) for o in METRICS["Events"].outcomes]
        deliveries = [m("Deliveries", "Sum", {"Outcome": o}, label=o) for o in DELIVERY_OUTCOMES]
        dashboard = cw.Dashboard(self, "Dashboard", dashboard_name=f"{prefix}-worker")
        dashboard.add_widgets(
            cw.AlarmStatusWidget(title="Alarms", alarms=self.alarms, width=24, height=3),
        )
        dashboard.add_widgets(
            cw.GraphWidget(title="Events by outcome", left=by_outcome, stacked=True, width=8),
            cw.GraphWidget(title="Posts by outcome", left=deliveries, stacked=True, width=8),
            cw.GraphWidget(
                title="Delivery success (%, 410 gone excluded)",
                left=[self._delivery_ratio(("ok",), "success %")],
                left_annotations=[cw.HorizontalAnnotation(value=DELIVERY_SUCCESS_MIN_PERCENT, label="alarm")],
                width=4,
            ),
            cw.GraphWidget(
                title="Throttled posts (%)",
                left=[self._delivery_ratio(("throttled",), "throttled %")],
                left_annotations=[cw.HorizontalAnnotation(value=THROTTLED_MAX_PERCENT, label="alarm")],
                width=4,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Delivery latency (ms, sentAt to acknowledged)",
                left=[m("DeliveryLatency", s, label=s) for s in ("p50", "p95", "p99")],
                width=8,
            ),
            cw.GraphWidget(
                title="Queue lag (ms, sent to received)",
                left=[m("QueueLag", s, label=s) for s in ("p50", "p95", "Maximum")],
                width=8,
            ),
            cw.GraphWidget(
                title="Queue",
                left=[
                    self.queue.metric_approximate_number_of_messages_visible(label="visible"),
                    self.queue.metric_approximate_number_of_messages_not_visible(label="in flight"),
                    self.dlq.metric_approximate_number_of_messages_visible(label="dead letters"),
                ],
                right=[self.queue.metric_approximate_age_of_oldest_message(label="oldest (s)")],
                width=8,
            ),
        )
        dashboard.add_widgets(
            cw.GraphWidget(
                title="Retries, remainders, dead letters, pruned",
                left=[
                    m("Retries", "Sum", label="retries"),
                    m("Remainders", "Sum", label="remainders"),
                    m("DeadLettered", "Sum", label="dead-lettered"),
                    m("ConnectionsPruned", "Sum", label="pruned"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Workers",
                left=[
                    self._running_tasks(cluster).with_(label="running tasks"),
                    self._desired_tasks(cluster).with_(label="desired tasks"),
                ],
                right=[
                    m("Ready", "Minimum", label="ready (min)"),
                    m("ProcessRestarts", "Sum", label="process restarts"),
                ],
                width=8,
            ),
            cw.GraphWidget(
                title="Task CPU and memory (%)",
                left=[
                    self.service.metric_cpu_utilization(label="CPU"),
                    self.service.metric_memory_utilization(label="memory"),
                ],
                width=8,
            ),
        )
        return dashboard


def _use_metric_math(policy: appscaling.TargetTrackingScalingPolicy, expr: cw.MathExpression) -> None:
    """Target tracking on a metric-math expression: CloudFormation takes one, CDK's L2 only a Metric."""
    metrics: list[dict[str, Any]] = []
    for metric_id, metric in expr.using_metrics.items():
        assert isinstance(metric, cw.Metric)
        metrics.append(
            {
                "Id": metric_id,
                "MetricStat": {
                    "Metric": {
                        "Namespace": metric.namespace,
                        "MetricName": metric.metric_name,
                        "Dimensions": [{"Name": k, "Value": v} for k, v in (metric.dimensions or {}).items()],
                    },
                    "Stat": metric.statistic,
                },
                "ReturnData": False,
            }
        )
    metrics.append(
        {"Id": "backlog_per_task", "Expression": expr.expression, "Label": expr.label, "ReturnData": True}
    )
    cfn = policy.node.default_child
    assert isinstance(cfn, appscaling.CfnScalingPolicy)
    spec = "TargetTrackingScalingPolicyConfiguration.CustomizedMetricSpecification"
    for single_metric_key in ("MetricName", "Namespace", "Dimensions", "Statistic", "Unit"):
        cfn.add_property_deletion_override(f"{spec}.{single_metric_key}")
    cfn.add_property_override(f"{spec}.Metrics", metrics)


def _retention(days: int) -> logs.RetentionDays:
    named = {
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
    if days not in named:
        raise ValueError(f"logRetentionDays must be one of {sorted(named)}, got {days}")
    return logs.RetentionDays[named[days]]
