"""The API Gateway WebSocket API: route selection on ``action``, every lifecycle route with its route
response, one Lambda proxy integration, a throttled stage with an access log that never holds a token or a
connection id, and an optional custom domain.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from aws_cdk import RemovalPolicy, Stack
from aws_cdk import aws_apigateway as apigw_v1
from aws_cdk import aws_apigatewayv2 as apigw
from aws_cdk import aws_apigatewayv2_integrations as integrations
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs

from fanout_cdk.parameters import Params

ROUTE_SELECTION_EXPRESSION = "$request.body.action"
# Every action a client sends (docs/protocol.md); the lifecycle answers each, if only with system.error.
CLIENT_ACTIONS = (
    "ping",
    "subscribe",
    "unsubscribe",
    "notification.subscribe",
    "hello",
    "resume",
    "chat.send",
    "chat.read",
    "chat.typing",
    "chat.ack",
    "presence.query",
)
ROUTES = ("$connect", "$disconnect", "$default", *CLIENT_ACTIONS)
# The access log: what happened to a request, never who sent it or what it carried. No query string or
# headers (the connect token travels there), no connection id (raw ids are never logged), no source IP.
ACCESS_LOG_FORMAT = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "status": "$context.status",
    "integrationStatus": "$context.integration.status",
    "integrationLatencyMs": "$context.integration.latency",
    "error": "$context.error.message",
    "errorType": "$context.error.responseType",
}


@dataclass(frozen=True)
class WebSocket:
    api: apigw.WebSocketApi
    stage: apigw.WebSocketStage
    access_log: logs.LogGroup
    domain: apigw.DomainName | None


def build_api(stack: Stack, p: Params, prefix: str, handler: lambda_.IFunction) -> WebSocket:
    """The API with every route integrated with ``handler`` (two-way), and its stage."""
    integration = integrations.WebSocketLambdaIntegration("Lifecycle", handler)
    two_way = apigw.WebSocketRouteOptions(integration=integration, return_response=True)
    api = apigw.WebSocketApi(
        stack,
        "WebSocketApi",
        api_name=f"{prefix}-websocket",
        description="fanout: client WebSocket connections; the lifecycle Lambda answers every route",
        route_selection_expression=ROUTE_SELECTION_EXPRESSION,
        connect_route_options=two_way,
        disconnect_route_options=two_way,
        default_route_options=two_way,
    )
    for action in CLIENT_ACTIONS:
        api.add_route(action, integration=integration, return_response=True)

    domain = _custom_domain(stack, p)
    stage = apigw.WebSocketStage(
        stack,
        "WebSocketStage",
        web_socket_api=api,
        stage_name=p.req("stage"),
        auto_deploy=True,
        throttle=apigw.ThrottleSettings(
            rate_limit=p.integer("throttleRate"), burst_limit=p.integer("throttleBurst")
        ),
    )
    if domain is not None:
        # Made here rather than through the stage's domain_mapping, which names it "...undefined...".
        apigw.ApiMapping(stack, "WebSocketDomainMapping", api=api, domain_name=domain, stage=stage)
    access_log = logs.LogGroup(
        stack,
        "WebSocketAccessLogs",
        log_group_name=f"/aws/apigateway/{prefix}-websocket",
        retention=p.retention("logRetentionDays"),
        removal_policy=RemovalPolicy.RETAIN,
    )
    cfn_stage = stage.node.default_child
    assert isinstance(cfn_stage, apigw.CfnStage)
    cfn_stage.access_log_settings = apigw.CfnStage.AccessLogSettingsProperty(
        destination_arn=access_log.log_group_arn,
        format=json.dumps(ACCESS_LOG_FORMAT, separators=(",", ":")),
    )
    if p.flag("apiGatewayLogsRole"):
        stage.node.add_dependency(_account_logs_role(stack))
    return WebSocket(api, stage, access_log, domain)


def _custom_domain(stack: Stack, p: Params) -> apigw.DomainName | None:
    name, certificate = p.get("domainName"), p.get("certificateArn")
    if not (name and certificate):  # Params.check() refused one without the other
        return None
    return apigw.DomainName(
        stack,
        "WebSocketDomain",
        domain_name=name,
        certificate=acm.Certificate.from_certificate_arn(stack, "WebSocketCertificate", certificate),
    )


def _account_logs_role(stack: Stack) -> apigw_v1.CfnAccount:
    """API Gateway writes a stage's access log only with the account's CloudWatch Logs role set (once per
    account and region). Retained on delete: other APIs of the account may log through it by then."""
    role = iam.Role(
        stack,
        "ApiGatewayLogsRole",
        assumed_by=iam.ServicePrincipal("apigateway.amazonaws.com"),
        description="API Gateway (account-wide): write access and execution logs to CloudWatch Logs",
        managed_policies=[
            iam.ManagedPolicy.from_aws_managed_policy_name(
                "service-role/AmazonAPIGatewayPushToCloudWatchLogs"
            )
        ],
    )
    role.apply_removal_policy(RemovalPolicy.RETAIN)
    account = apigw_v1.CfnAccount(stack, "ApiGatewayAccount", cloud_watch_role_arn=role.role_arn)
    account.apply_removal_policy(RemovalPolicy.RETAIN)
    return account
