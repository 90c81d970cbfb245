"""The WebSocket API and the lifecycle Lambda in the synthesized template: routes, route responses, the
integration, the stage, the custom domain, the Lambda's settings, role and environment."""

from __future__ import annotations

import importlib
import json
from typing import Any

import pytest

from fanout.config import Settings
from fanout.lifecycle.handler import ACTIONS
from tests.deploy.conftest import CUSTOM_API, Synth
from tests.deploy.test_stack import as_list, env_of, logical_id, render

# fanout_cdk imports aws_cdk, which starts a Node process and loads the CDK into it (seconds of CPU): the
# tests import it where they read it, so a test process that collects this file but runs none of it (the
# other one of `make test`) never pays for it. deploy/ is on sys.path through conftest.

# Settings the lifecycle Lambda is given that src/fanout/config.py does not read yet (issue 15: the
# lifecycle reads its keys from Secrets Manager). Remove each once Settings has it.
PENDING_SETTINGS: set[str] = set()  # settings the Lambda gets that the code does not read yet


def routes(s: Synth) -> dict[str, dict[str, Any]]:
    return {
        r["Properties"]["RouteKey"]: r["Properties"] for r in s.resources("AWS::ApiGatewayV2::Route").values()
    }


def lambda_env(s: Synth) -> dict[str, Any]:
    _, function = s.one("AWS::Lambda::Function")
    return dict(function["Properties"]["Environment"]["Variables"])


def test_api_routes_on_the_action_field(default_synth: Synth) -> None:
    """A WebSocket API whose route selection reads the frame's `action`."""
    _, api = default_synth.one("AWS::ApiGatewayV2::Api")
    assert api["Properties"]["ProtocolType"] == "WEBSOCKET"
    assert api["Properties"]["RouteSelectionExpression"] == "$request.body.action"


def test_every_route_is_two_way_through_the_lambda(default_synth: Synth) -> None:
    """$connect, $disconnect, $default and every client action route to the one Lambda proxy integration,
    each with its $default route response."""
    from fanout_cdk import websocket_api

    # every action the lifecycle answers has a route of its own (its own metrics and throttling)
    assert set(ACTIONS) | {"chat.send", "chat.read"} <= set(websocket_api.CLIENT_ACTIONS)
    found = routes(default_synth)
    assert (
        set(found)
        == set(websocket_api.ROUTES)
        == {"$connect", "$disconnect", "$default", *websocket_api.CLIENT_ACTIONS}
    )
    integration_id, integration = default_synth.one("AWS::ApiGatewayV2::Integration")
    function_id = logical_id(default_synth, "AWS::Lambda::Function", "LifecycleFunction")
    assert integration["Properties"]["IntegrationType"] == "AWS_PROXY"
    assert f"${{{function_id}.Arn}}" in render(integration["Properties"]["IntegrationUri"])
    route_ids = {}
    for key, route in found.items():
        assert render(route["Target"]) == f"integrations/${{{integration_id}}}", key
        assert route["RouteResponseSelectionExpression"] == "$default", key
    for route_id, route in default_synth.resources("AWS::ApiGatewayV2::Route").items():
        route_ids[route_id] = route["Properties"]["RouteKey"]
    responses = default_synth.resources("AWS::ApiGatewayV2::RouteResponse").values()
    answered = {route_ids[r["Properties"]["RouteId"]["Ref"]] for r in responses}
    assert answered == set(websocket_api.ROUTES)
    assert {r["Properties"]["RouteResponseKey"] for r in responses} == {"$default"}


def test_api_gateway_may_invoke_the_lambda_for_each_route(default_synth: Synth) -> None:
    """Each route has its invoke permission, scoped to that route of this API."""
    from fanout_cdk import websocket_api

    function_id = logical_id(default_synth, "AWS::Lambda::Function", "LifecycleFunction")
    api_id = logical_id(default_synth, "AWS::ApiGatewayV2::Api", "WebSocketApi")
    sources = set()
    for permission in default_synth.resources("AWS::Lambda::Permission").values():
        props = permission["Properties"]
        assert props["Action"] == "lambda:InvokeFunction"
        assert props["Principal"] == "apigateway.amazonaws.com"
        assert render(props["FunctionName"]) == f"${{{function_id}.Arn}}"
        source = render(props["SourceArn"])
        assert f":${{{api_id}}}/*" in source
        stage_and_route = source.rsplit("/", 1)[1]  # any stage (*), then the route key
        assert stage_and_route.startswith("*")
        sources.add(stage_and_route.removeprefix("*"))
    assert sources == set(websocket_api.ROUTES)


def test_stage_throttles_and_logs_no_token_nor_connection_id(
    default_synth: Synth, custom_api_synth: Synth
) -> None:
    """The stage throttles every route and its access log records the request's fate, never its query
    string, headers, body, caller or connection id."""
    _, stage = default_synth.one("AWS::ApiGatewayV2::Stage")
    props = stage["Properties"]
    assert props["StageName"] == "production" and props["AutoDeploy"] is True
    assert props["DefaultRouteSettings"] == {"ThrottlingRateLimit": 1000, "ThrottlingBurstLimit": 2000}
    _, custom = custom_api_synth.one("AWS::ApiGatewayV2::Stage")
    assert custom["Properties"]["DefaultRouteSettings"] == {
        "ThrottlingRateLimit": 300,
        "ThrottlingBurstLimit": 600,
    }
    log_format = props["AccessLogSettings"]["Format"]
    fields = json.loads(log_format)
    assert {"requestId", "routeKey", "status", "eventType", "error"} <= set(fields)
    for forbidden in (
        "connectionId",
        "querystring",
        "header",
        "$input",
        "$request.",
        "body",
        "identity",
        "authorizer",
    ):
        assert forbidden.lower() not in log_format.lower(), forbidden
    log_group_id = logical_id(default_synth, "AWS::Logs::LogGroup", "WebSocketAccessLogs")
    assert render(props["AccessLogSettings"]["DestinationArn"]) == f"${{{log_group_id}.Arn}}"
    assert default_synth.template["Resources"][log_group_id]["Properties"]["RetentionInDays"] == 30


def test_account_logs_role_is_made_only_when_asked(default_synth: Synth, custom_api_synth: Synth) -> None:
    """By default the stack sets the account's API Gateway logs role (retained), and the stage waits for it;
    with apiGatewayLogsRole=false it leaves the account alone."""
    account_id, account = default_synth.one("AWS::ApiGateway::Account")
    assert account["DeletionPolicy"] == "Retain"
    role_id = account["Properties"]["CloudWatchRoleArn"]["Fn::GetAtt"][0]
    assert default_synth.template["Resources"][role_id]["DeletionPolicy"] == "Retain"
    _, stage = default_synth.one("AWS::ApiGatewayV2::Stage")
    assert account_id in stage["DependsOn"]
    assert not custom_api_synth.resources("AWS::ApiGateway::Account")


def test_custom_domain_maps_the_stage(custom_api_synth: Synth, default_synth: Synth) -> None:
    """With domainName and certificateArn the stage is mapped to the domain, and DNS's target is an output."""
    domain_id, domain = custom_api_synth.one("AWS::ApiGatewayV2::DomainName")
    assert domain["Properties"]["DomainName"] == CUSTOM_API["domainName"]
    [config] = domain["Properties"]["DomainNameConfigurations"]
    assert config["CertificateArn"] == CUSTOM_API["certificateArn"]
    _, mapping = custom_api_synth.one("AWS::ApiGatewayV2::ApiMapping")
    api_id = logical_id(custom_api_synth, "AWS::ApiGatewayV2::Api", "WebSocketApi")
    assert mapping["Properties"] == {
        "ApiId": {"Ref": api_id},
        "DomainName": {"Ref": domain_id},
        "Stage": "live",
    }
    outputs = custom_api_synth.template["Outputs"]
    assert render(outputs["WebSocketDomainUrl"]["Value"]) == f"wss://${{{domain_id}}}"
    assert outputs["WebSocketDomainTarget"]["Value"] == {"Fn::GetAtt": [domain_id, "RegionalDomainName"]}
    assert not default_synth.resources("AWS::ApiGatewayV2::DomainName")


def test_existing_api_means_the_worker_alone(existing_synth: Synth) -> None:
    """Given apiId, the stack makes no API, no route, no Lambda: the worker serves the existing API."""
    for type_ in (
        "AWS::ApiGatewayV2::Api",
        "AWS::ApiGatewayV2::Route",
        "AWS::Lambda::Function",
        "AWS::ApiGateway::Account",
    ):
        assert not existing_synth.resources(type_), type_
    assert "FANOUT_MANAGEMENT_ENDPOINT" not in env_of(existing_synth)  # each record's domain and stage


def test_worker_posts_through_the_new_api(default_synth: Synth) -> None:
    """With the API made here the worker posts through its execute-api endpoint, whatever domain clients use."""
    api_id = logical_id(default_synth, "AWS::ApiGatewayV2::Api", "WebSocketApi")
    endpoint = render(env_of(default_synth)["FANOUT_MANAGEMENT_ENDPOINT"])
    assert endpoint == f"https://${{{api_id}}}.execute-api.${{AWS::Region}}.${{AWS::URLSuffix}}/production"


# ---- the lifecycle Lambda ----------------------------------------------------------------------------------


def test_lambda_runtime_handler_and_sizes(default_synth: Synth) -> None:
    """Python 3.11 on x86_64 with the stated memory and timeout, running the handler that src defines."""
    from fanout_cdk import lifecycle

    _, function = default_synth.one("AWS::Lambda::Function")
    props = function["Properties"]
    assert props["Runtime"] == "python3.11" and props["Architectures"] == ["x86_64"]
    assert (props["MemorySize"], props["Timeout"]) == (lifecycle.MEMORY_MB, 10)
    assert props["Handler"] == lifecycle.LAMBDA_HANDLER
    module, _, name = lifecycle.LAMBDA_HANDLER.rpartition(".")
    assert callable(getattr(importlib.import_module(module), name))
    assert props["VpcConfig"]["SubnetIds"]  # it reaches MongoDB the way the worker does
    log_group_id = logical_id(default_synth, "AWS::Logs::LogGroup", "LifecycleLogs")
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": log_group_id}}


@pytest.mark.parametrize("which", ["default", "custom"])
def test_lambda_role_is_least_privilege(which: str, default_synth: Synth, custom_api_synth: Synth) -> None:
    """The Lambda's role writes its own logs, attaches to the VPC, reads the two secrets and sends to the
    inbound and events queues only, once each: no wildcard action, no managed policy, no management-API
    permission."""
    from fanout_cdk import lifecycle
    from fanout_cdk.parameters import DUMMY_JWT_SECRET_ARN, DUMMY_SECRET_ARN

    s = default_synth if which == "default" else custom_api_synth
    role_id = logical_id(s, "AWS::IAM::Role", "LifecycleRole")
    role = s.template["Resources"][role_id]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {
        "Service": "lambda.amazonaws.com"
    }
    assert "ManagedPolicyArns" not in role
    assert not [
        p for p in s.resources("AWS::IAM::Policy").values() if {"Ref": role_id} in p["Properties"]["Roles"]
    ]
    granted: dict[str, set[str]] = {}
    grants = 0
    for statement in (st for policy in role["Policies"] for st in policy["PolicyDocument"]["Statement"]):
        assert (
            statement["Effect"] == "Allow" and "NotAction" not in statement and "NotResource" not in statement
        )
        for action in as_list(statement["Action"]):
            assert "*" not in action, action
            resources = {render(r) for r in as_list(statement["Resource"])}
            grants += len(resources)
            granted.setdefault(action, set()).update(resources)
    assert grants == sum(len(r) for r in granted.values())  # no action granted twice on one resource
    log_group = "${" + logical_id(s, "AWS::Logs::LogGroup", "LifecycleLogs") + ".Arn}"
    mongo = CUSTOM_API["mongoSecretArn"] if which == "custom" else DUMMY_SECRET_ARN
    jwt = CUSTOM_API["jwtSecretArn"] + "-??????" if which == "custom" else DUMMY_JWT_SECRET_ARN
    inbound = "${" + logical_id(s, "AWS::SQS::Queue", "InboundQueue") + ".Arn}"
    events = "${" + logical_id(s, "AWS::SQS::Queue", "EventsQueue") + ".Arn}"
    assert granted == {
        "logs:CreateLogStream": {log_group},
        "logs:PutLogEvents": {log_group},
        "secretsmanager:GetSecretValue": {mongo, jwt},
        "sqs:SendMessage": {inbound, events},  # forwarded actions; typing, presence, receipts and replays
        **{action: {"*"} for action in lifecycle.VPC_ACTIONS},
    }
    assert all(a.startswith("ec2:") for a in lifecycle.VPC_ACTIONS)


@pytest.mark.parametrize("which", ["default", "custom"])
def test_lambda_environment_is_production_only(
    which: str, default_synth: Synth, custom_api_synth: Synth
) -> None:
    """The Lambda runs with FANOUT_ENV=production and gets its keys as secret ARNs, never as values, and
    the URLs of the inbound queue and of the events queue (where typing, presence and receipts go)."""
    s = default_synth if which == "default" else custom_api_synth
    env = lambda_env(s)
    assert env["FANOUT_ENV"] == "production"
    assert "FANOUT_JWT_SECRET" not in env and "FANOUT_MONGO_URI" not in env
    assert env["FANOUT_MONGO_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    assert env["FANOUT_JWT_SECRET_ARN"].startswith("arn:aws:secretsmanager:")
    if which == "custom":
        assert (env["FANOUT_MONGO_SECRET_FIELD"], env["FANOUT_JWT_AUDIENCE"]) == ("uri", "realtime")
    assert env["FANOUT_INBOUND_QUEUE_URL"] == {"Ref": logical_id(s, "AWS::SQS::Queue", "InboundQueue")}
    assert env["FANOUT_QUEUE_URL"] == {"Ref": logical_id(s, "AWS::SQS::Queue", "EventsQueue")}
    # Settings ignores unknown FANOUT_* variables: a misspelt one would be silently dropped.
    names = {n.removeprefix("FANOUT_").lower() for n in env}
    assert set() == names - set(Settings.model_fields) - PENDING_SETTINGS
    assert set() == PENDING_SETTINGS & set(Settings.model_fields), (
        "Settings reads it now: leave PENDING_SETTINGS"
    )


def test_secret_resources_cover_partial_arns() -> None:
    """A complete secret ARN is granted as is; a partial one with Secrets Manager's random suffix."""
    from fanout_cdk import lifecycle

    complete = "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/jwt-Ab12Cd"
    assert lifecycle.secret_resource(complete) == complete
    assert lifecycle.secret_resource("arn:aws:secretsmanager:eu-west-1:1:secret:prod/jwt") == (
        "arn:aws:secretsmanager:eu-west-1:1:secret:prod/jwt-??????"
    )
