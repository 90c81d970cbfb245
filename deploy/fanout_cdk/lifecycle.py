"""The lifecycle Lambda: the same ``fanout`` source as the worker, answering every WebSocket route.

Its role can write its own logs, attach to the VPC (it reaches MongoDB the way the worker does), read
two secrets (the MongoDB URI and the connect-token key), send to the inbound queue, where it forwards
the client actions the domain services own (``chat.send``, ``chat.read``), and send to the events queue,
where it publishes typing indicators, presence and receipts for the worker to deliver. Nothing else; it
posts nothing back through the management API, so it has no ``execute-api`` permission. Its environment
is production only: the keys arrive as secret ARNs, never as values, so no development key can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import Aws, Duration, RemovalPolicy, Stack
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sqs as sqs
from metrics_contract import NAMESPACE

from fanout_cdk.bundling import lifecycle_code
from fanout_cdk.parameters import COMPLETE_SECRET_ARN, Params
from fanout_cdk.queues import Queues
from fanout_cdk.service import Network

LAMBDA_HANDLER = "fanout.lifecycle.lambda_handler"
RUNTIME = lambda_.Runtime.PYTHON_3_11
ARCHITECTURE = "x86_64"  # as the worker's tasks; bundling.PLATFORMS also knows arm64
MEMORY_MB = 512  # Lambda's CPU share grows with memory: 512 MB keeps a cold start with pydantic under 1 s
TIMEOUT = Duration.seconds(
    10
)  # twice the MongoDB timeout (FANOUT_MONGO_TIMEOUT_MS), under API Gateway's 29 s
# What Lambda needs to attach the function to the VPC's subnets; EC2 takes no resource scoping for these.
VPC_ACTIONS = (
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DescribeSubnets",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
)


@dataclass(frozen=True)
class Lifecycle:
    function: lambda_.Function
    role: iam.Role
    log_group: logs.LogGroup
    inbound: sqs.Queue  # client actions for the domain services (docs/protocol.md section 15)


def secret_resource(arn: str) -> str:
    """The IAM resource for a secret: its complete ARN, or a partial one with Secrets Manager's suffix."""
    return arn if COMPLETE_SECRET_ARN.search(arn) else f"{arn}-??????"


def build_lifecycle(stack: Stack, p: Params, prefix: str, network: Network, queues: Queues) -> Lifecycle:
    """The function, its log group and its least-privilege role."""
    log_group = logs.LogGroup(
        stack,
        "LifecycleLogs",
        log_group_name=f"/aws/lambda/{prefix}-lifecycle",
        retention=p.retention("logRetentionDays"),
        removal_policy=RemovalPolicy.RETAIN,
    )
    mongo_arn, jwt_arn = p.req("mongoSecretArn"), p.req("jwtSecretArn")
    inbound = sqs.Queue(
        stack,
        "InboundQueue",
        queue_name=f"{prefix}-inbound",
        retention_period=Duration.days(4),
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
    )
    role = iam.Role(
        stack,
        "LifecycleRole",
        assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
        description="fanout lifecycle Lambda: own logs, VPC interfaces, the two secrets, the inbound and "
        "events queues",
        inline_policies={
            "Lifecycle": iam.PolicyDocument(
                statements=[
                    iam.PolicyStatement(
                        sid="WriteOwnLogs",
                        actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                        resources=[log_group.log_group_arn],
                    ),
                    iam.PolicyStatement(sid="AttachToVpc", actions=list(VPC_ACTIONS), resources=["*"]),
                    iam.PolicyStatement(
                        sid="ReadSecrets",
                        actions=["secretsmanager:GetSecretValue"],
                        resources=[secret_resource(mongo_arn), secret_resource(jwt_arn)],
                    ),
                    iam.PolicyStatement(
                        sid="ForwardClientActions", actions=["sqs:SendMessage"], resources=[inbound.queue_arn]
                    ),
                    iam.PolicyStatement(  # typing indicators, presence and receipts, for the worker
                        sid="PublishLiveEvents",
                        actions=["sqs:SendMessage"],
                        resources=[queues.queue.queue_arn],
                    ),
                ]
            )
        },
    )
    environment = {
        "FANOUT_ENV": "production",
        "FANOUT_REGION": Aws.REGION,
        "FANOUT_MONGO_SECRET_ARN": mongo_arn,
        "FANOUT_JWT_SECRET_ARN": jwt_arn,
        "FANOUT_MONGO_DB": p.req("mongoDb"),
        "FANOUT_INBOUND_QUEUE_URL": inbound.queue_url,
        "FANOUT_QUEUE_URL": queues.queue.queue_url,  # where typing, presence and receipts are published
        "FANOUT_CLOUDWATCH_EMF": "true",
        "FANOUT_CLOUDWATCH_NAMESPACE": NAMESPACE,
        "FANOUT_LOG_FORMAT": "json",
    }
    if p.get("mongoSecretField"):
        environment["FANOUT_MONGO_SECRET_FIELD"] = p.req("mongoSecretField")
    if p.get("jwtAudience"):
        environment["FANOUT_JWT_AUDIENCE"] = p.req("jwtAudience")
    function = lambda_.Function(
        stack,
        "LifecycleFunction",
        function_name=f"{prefix}-lifecycle",
        description="fanout: WebSocket connection lifecycle ($connect, $disconnect and every client action)",
        code=lifecycle_code(ARCHITECTURE),
        handler=LAMBDA_HANDLER,
        runtime=RUNTIME,
        architecture=lambda_.Architecture.X86_64,
        memory_size=MEMORY_MB,
        timeout=TIMEOUT,
        role=role,
        environment=environment,
        log_group=log_group,
        vpc=network.vpc,
        vpc_subnets=network.subnets,
        allow_public_subnet=False,
    )
    # CDK adds a DependsOn on the role beside the GetAtt that already orders them: say so to cfn-lint.
    cfn_function = function.node.default_child
    assert isinstance(cfn_function, lambda_.CfnFunction)
    cfn_function.add_metadata("cfn-lint", {"config": {"ignore_checks": ["W3005"]}})
    return Lifecycle(function, role, log_group, inbound)
