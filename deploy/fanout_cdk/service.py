"""Service and scaling: the network and cluster (given or made), the Fargate worker service with its
container settings, and autoscaling on backlog per task and on the oldest message's age.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aws_cdk import Aws, Duration, RemovalPolicy, Size, Stack
from aws_cdk import aws_applicationautoscaling as appscaling
from aws_cdk import aws_cloudwatch as cw
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecr_assets as ecr_assets
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_secretsmanager as secretsmanager
from metrics_contract import NAMESPACE

from fanout_cdk.metrics import running_tasks
from fanout_cdk.parameters import COMPLETE_SECRET_ARN, Params
from fanout_cdk.queues import VISIBILITY_TIMEOUT_S, Queues

REPO_ROOT = Path(__file__).resolve().parents[2]

# One source for the timing settings the worker and ECS must agree on.
SHUTDOWN_BUDGET_S = 20  # FANOUT_SHUTDOWN_BUDGET_S: SIGTERM -> in-flight events finished or released
STOP_TIMEOUT_S = SHUTDOWN_BUDGET_S + 10  # ECS waits this long after SIGTERM before SIGKILL (Fargate max 120)
METRICS_PORT = 9400
# The root filesystem is read-only; the worker writes only in the temporary directory (the pool's
# prometheus-client multiprocess files, from tempfile.mkdtemp), so /tmp is a writable volume of the task's
# ephemeral storage.
TMP_DIR = "/tmp"  # noqa: S108 - the container's own scratch volume
# The Dockerfile's non-root USER, set on the task too: an image given with `-c image=` runs unprivileged.
CONTAINER_USER = "10001:10001"
# A private ECR image URI: ECS pulls it with the execution role, which then needs that repository's pull.
ECR_IMAGE = re.compile(
    r"(?P<account>\d{12})\.dkr\.ecr(?:-fips)?\.(?P<region>[a-z0-9-]+)\.amazonaws\.com(?:\.cn)?/"
    r"(?P<repository>[a-z0-9][a-z0-9._/-]*?)(?::[\w.-]+)?(?:@sha256:[0-9a-f]{64})?"
)
HEALTH_CHECK_COMMAND = [
    "CMD",
    "python",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{METRICS_PORT}/healthz', timeout=4)",
]


@dataclass(frozen=True)
class Network:
    vpc: ec2.IVpc
    subnets: ec2.SubnetSelection
    cluster: ecs.ICluster


@dataclass(frozen=True)
class Worker:
    log_group: logs.LogGroup
    container: ecs.ContainerDefinition
    service: ecs.FargateService


def build_network(stack: Stack, p: Params) -> Network:
    """The given VPC, subnets and cluster, or a new VPC (public + private subnets) and cluster."""
    vpc_id, cluster_name = p.get("vpcId"), p.get("clusterName")
    if vpc_id:
        subnet_ids = [s.strip() for s in (p.get("subnetIds") or "").split(",") if s.strip()]
        if not subnet_ids:
            raise ValueError("context parameter 'subnetIds' is required with 'vpcId'")
        vpc: ec2.IVpc = ec2.Vpc.from_vpc_attributes(
            stack,
            "Vpc",
            vpc_id=vpc_id,
            availability_zones=[f"az{i}" for i in range(len(subnet_ids))],
            private_subnet_ids=subnet_ids,
        )
        subnets = ec2.SubnetSelection(
            subnets=[ec2.Subnet.from_subnet_id(stack, f"Subnet{i}", s) for i, s in enumerate(subnet_ids)]
        )
    else:
        vpc = ec2.Vpc(
            stack,
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
            stack, "Cluster", cluster_name=cluster_name, vpc=vpc
        )
    else:
        cluster = ecs.Cluster(stack, "Cluster", vpc=vpc, container_insights_v2=ecs.ContainerInsights.ENABLED)
    return Network(vpc, subnets, cluster)


def mongo_secret(stack: Stack, arn: str) -> secretsmanager.ISecret:
    """The MongoDB URI secret by its complete ARN (with the 6-character suffix) or its partial one."""
    if COMPLETE_SECRET_ARN.search(arn):
        return secretsmanager.Secret.from_secret_complete_arn(stack, "MongoUriSecret", arn)
    return secretsmanager.Secret.from_secret_partial_arn(stack, "MongoUriSecret", arn)


def build_worker(
    stack: Stack,
    p: Params,
    prefix: str,
    queues: Queues,
    network: Network,
    task_role: iam.IRole,
    management_endpoint: str | None,
    api_id: str,
) -> Worker:
    """The log group, the task definition running ``fanout worker``, and the Fargate service."""
    # The execution role (ECS's own: pull the image, write logs, inject the secret) is made by CDK
    # with grants scoped to this log group, this secret and the image's repository.
    secret = mongo_secret(stack, p.req("mongoSecretArn"))
    log_group = logs.LogGroup(
        stack,
        "WorkerLogs",
        log_group_name=f"/ecs/{prefix}-worker",
        retention=p.retention("logRetentionDays"),
        removal_policy=RemovalPolicy.RETAIN,
    )
    task = ecs.FargateTaskDefinition(
        stack,
        "WorkerTask",
        cpu=p.integer("cpu"),
        memory_limit_mib=p.integer("memory"),
        task_role=task_role,
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
    if image_uri:
        _grant_ecr_pull(stack, image_uri, task.obtain_execution_role())
    # Explicit: inside a Fargate task os.cpu_count() can report the host's CPUs, not the task's share.
    processes = p.integer("processes") if p.get("processes") else max(1, p.integer("cpu") // 1024)
    container = task.add_container(
        "worker",
        image=image,
        command=["worker", "--processes", str(processes)],
        essential=True,
        environment=worker_environment(p, queues, management_endpoint, api_id),
        secrets={"FANOUT_MONGO_URI": ecs.Secret.from_secrets_manager(secret, p.get("mongoSecretField"))},
        port_mappings=[ecs.PortMapping(container_port=METRICS_PORT, name="metrics")],
        health_check=ecs.HealthCheck(
            command=HEALTH_CHECK_COMMAND,
            interval=Duration.seconds(30),
            timeout=Duration.seconds(5),
            retries=3,
            start_period=Duration.seconds(30),
        ),
        stop_timeout=Duration.seconds(STOP_TIMEOUT_S),
        readonly_root_filesystem=True,
        user=CONTAINER_USER,
        logging=ecs.LogDrivers.aws_logs(
            stream_prefix="worker",
            log_group=log_group,
            mode=ecs.AwsLogDriverMode.NON_BLOCKING,
            max_buffer_size=Size.mebibytes(25),
        ),
    )
    task.add_volume(name="tmp")  # no host path: Fargate ephemeral storage, private to the task
    container.add_mount_points(ecs.MountPoint(container_path=TMP_DIR, source_volume="tmp", read_only=False))
    service = ecs.FargateService(
        stack,
        "WorkerService",
        cluster=network.cluster,
        task_definition=task,
        service_name=f"{prefix}-worker",
        desired_count=p.integer("minTasks"),
        vpc_subnets=network.subnets,
        assign_public_ip=False,
        min_healthy_percent=100,
        max_healthy_percent=200,
        circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
        enable_execute_command=False,
    )
    return Worker(log_group, container, service)


def _grant_ecr_pull(stack: Stack, image_uri: str, execution_role: iam.IRole) -> None:
    """Pull of a given private ECR image: its repository's layers and the registry token; nothing for an
    image elsewhere (``from_registry`` grants nothing itself, so ECS could not pull an ECR one)."""
    found = ECR_IMAGE.fullmatch(image_uri)
    if found is None:
        return
    arn = stack.format_arn(
        service="ecr",
        region=found["region"],
        account=found["account"],
        resource="repository",
        resource_name=found["repository"],
    )
    repository = ecr.Repository.from_repository_attributes(
        stack, "ImageRepository", repository_arn=arn, repository_name=found["repository"]
    )
    repository.grant_pull(execution_role)


def worker_environment(
    p: Params, queues: Queues, management_endpoint: str | None, api_id: str
) -> dict[str, str]:
    """The worker's FANOUT_* settings (the MongoDB URI comes as a secret, not here); the management
    endpoint is the context parameter's, else ``management_endpoint``, else each record's own; posts go
    only to ``api_id`` (FANOUT_API_IDS), the one API the task role may post to."""
    environment = {
        "FANOUT_ENV": "production",
        "FANOUT_REGION": Aws.REGION,
        "FANOUT_QUEUE_URL": queues.queue.queue_url,
        "FANOUT_QUEUE_NAME": queues.queue.queue_name,
        "FANOUT_DLQ_URL": queues.dlq.queue_url,
        "FANOUT_DLQ_NAME": queues.dlq.queue_name,
        "FANOUT_TOPIC_ARN": queues.topic.topic_arn,
        "FANOUT_MONGO_DB": p.req("mongoDb"),
        "FANOUT_VISIBILITY_TIMEOUT_S": str(VISIBILITY_TIMEOUT_S),
        "FANOUT_SHUTDOWN_BUDGET_S": str(SHUTDOWN_BUDGET_S),
        "FANOUT_METRICS_HOST": "0.0.0.0",
        "FANOUT_METRICS_PORT": str(METRICS_PORT),
        "FANOUT_CLOUDWATCH_EMF": "true",
        "FANOUT_CLOUDWATCH_NAMESPACE": NAMESPACE,
        "FANOUT_LOG_FORMAT": "json",
        "FANOUT_API_IDS": api_id,
    }
    endpoint = p.get("managementEndpoint") or management_endpoint
    if endpoint:
        environment["FANOUT_MANAGEMENT_ENDPOINT"] = endpoint
    return environment


def add_autoscaling(
    p: Params, queues: Queues, cluster: ecs.ICluster, service: ecs.FargateService, oldest_max_s: int
) -> None:
    """Target tracking on backlog per task, and step scaling on the oldest message's age."""
    scaling = service.auto_scale_task_count(
        min_capacity=p.integer("minTasks"), max_capacity=p.integer("maxTasks")
    )
    # Target tracking on backlog per task: visible messages / running tasks (Container Insights).
    backlog = cw.MathExpression(
        expression="visible / IF(running > 0, running, 1)",
        using_metrics={
            "visible": queues.queue.metric_approximate_number_of_messages_visible(
                statistic="Average", period=Duration.minutes(1)
            ),
            "running": running_tasks(cluster, service),
        },
        label="Backlog per task",
        period=Duration.minutes(1),
    )
    scaling.scale_to_track_custom_metric(
        "BacklogPerTask",
        metric=queues.queue.metric_approximate_number_of_messages_visible(),  # replaced just below
        target_value=p.integer("backlogPerTask"),
        scale_in_cooldown=Duration.seconds(300),
        scale_out_cooldown=Duration.seconds(60),
    )
    [policy] = [
        c
        for c in service.node.find_all()
        if isinstance(c, appscaling.TargetTrackingScalingPolicy) and c.node.id == "BacklogPerTask"
    ]
    _use_metric_math(policy, backlog)
    # Step scaling on the oldest message's age: scale out hard when events wait, whatever the depth.
    scaling.scale_on_metric(
        "OldestMessageAge",
        metric=queues.queue.metric_approximate_age_of_oldest_message(
            statistic="Maximum", period=Duration.minutes(1)
        ),
        scaling_steps=[
            appscaling.ScalingInterval(upper=oldest_max_s // 2, change=0),
            appscaling.ScalingInterval(lower=oldest_max_s, change=+1),
            appscaling.ScalingInterval(lower=oldest_max_s * 5, change=+3),
        ],
        adjustment_type=appscaling.AdjustmentType.CHANGE_IN_CAPACITY,
        cooldown=Duration.seconds(120),
        evaluation_periods=2,
        datapoints_to_alarm=2,
    )


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
