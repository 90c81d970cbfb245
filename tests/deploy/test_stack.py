"""The synthesized CloudFormation template: queues, topic, service, least privilege, scaling, cfn-lint."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest

from fanout import attributes
from fanout.config import Settings
from tests.deploy.conftest import CUSTOM_API, EXISTING, REPO_ROOT, Synth, synth, tool

from metrics_contract import NAMESPACE  # isort: skip - deploy/ is on sys.path through conftest, as app.py puts it

# fanout_cdk imports aws_cdk, which starts a Node process and loads the CDK into it (seconds of CPU): the
# tests import it where they read it, so a test process that collects this file but runs none of it (the
# other one of `make test`) never pays for it.


def render(value: Any) -> str:
    """A CloudFormation string expression as text: Ref/GetAtt become ${...}, Fn::Join is joined."""
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and len(value) == 1:
        ((fn, arg),) = value.items()
        if fn == "Ref":
            return f"${{{arg}}}"
        if fn == "Fn::GetAtt":
            return f"${{{'.'.join(arg)}}}"
        if fn == "Fn::Join":
            return arg[0].join(render(part) for part in arg[1])
        if fn == "Fn::Sub":
            return arg if isinstance(arg, str) else arg[0]
    raise AssertionError(f"cannot render {value!r}")


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def role_statements(s: Synth, role_id: str) -> list[dict[str, Any]]:
    """Every Allow statement that reaches a role: inline policies, attached AWS::IAM::Policy resources."""
    role = s.template["Resources"][role_id]["Properties"]
    assert not role.get("ManagedPolicyArns"), "no managed policy may be attached to the task role"
    statements = [st for pol in role.get("Policies", []) for st in pol["PolicyDocument"]["Statement"]]
    for policy in s.resources("AWS::IAM::Policy").values():
        if {"Ref": role_id} in policy["Properties"].get("Roles", []):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def container(s: Synth) -> dict[str, Any]:
    _, task = s.one("AWS::ECS::TaskDefinition")
    [definition] = task["Properties"]["ContainerDefinitions"]
    return definition


def env_of(s: Synth) -> dict[str, Any]:
    return {e["Name"]: e["Value"] for e in container(s)["Environment"]}


def logical_id(s: Synth, type_: str, prefix: str) -> str:
    [found] = [k for k in s.resources(type_) if k.startswith(prefix)]
    return found


# ---- queues and topic ---------------------------------------------------------------------------------


def test_queue_has_an_encrypted_dlq_with_redrive(default_synth: Synth) -> None:
    """The events queue redrives to an encrypted DLQ after 5 receives, with the worker's visibility timeout."""
    from fanout_cdk import queues

    queue_id = logical_id(default_synth, "AWS::SQS::Queue", "EventsQueue")
    dlq_id = logical_id(default_synth, "AWS::SQS::Queue", "DeadLetterQueue")
    queue = default_synth.template["Resources"][queue_id]["Properties"]
    dlq = default_synth.template["Resources"][dlq_id]["Properties"]
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": [dlq_id, "Arn"]},
        "maxReceiveCount": queues.MAX_RECEIVE_COUNT,
    }
    assert queues.MAX_RECEIVE_COUNT == 5
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert queue["MessageRetentionPeriod"] == 4 * 86400
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    assert queue["VisibilityTimeout"] == queues.VISIBILITY_TIMEOUT_S == 30
    assert int(env_of(default_synth)["FANOUT_VISIBILITY_TIMEOUT_S"]) == queue["VisibilityTimeout"]
    assert (queue["QueueName"], dlq["QueueName"]) == ("fanout-events", "fanout-events-dlq")
    # What the publishers, the relay and the worker take (and the worker writes back) fits both queues.
    assert queue["MaximumMessageSize"] == dlq["MaximumMessageSize"] == attributes.MAX_MESSAGE_BYTES


def test_topic_delivers_raw_to_the_queue(default_synth: Synth) -> None:
    """The topic delivers to the queue without the SNS envelope."""
    _, sub = default_synth.one("AWS::SNS::Subscription")
    queue_id = logical_id(default_synth, "AWS::SQS::Queue", "EventsQueue")
    topic_id = logical_id(default_synth, "AWS::SNS::Topic", "EventsTopic")
    assert sub["Properties"]["Protocol"] == "sqs"
    assert sub["Properties"]["RawMessageDelivery"] is True
    assert sub["Properties"]["Endpoint"] == {"Fn::GetAtt": [queue_id, "Arn"]}
    assert sub["Properties"]["TopicArn"] == {"Ref": topic_id}


# ---- the task role: least privilege -------------------------------------------------------------------

CONNECTIONS = re.compile(
    r"^arn:\$\{AWS::Partition\}:execute-api:\$\{AWS::Region\}:\$\{AWS::AccountId\}:"
    r"(?P<api>[a-z0-9]{10}|\$\{WebSocketApi\w+\})/(?P<stage>[^/*]+)/(?P<method>POST)/@connections/\*$"
)


@pytest.mark.parametrize("which", ["default", "existing"])
def test_task_role_has_no_wildcard_beyond_connections(
    which: str, default_synth: Synth, existing_synth: Synth
) -> None:
    """The task role grants exactly the worker's calls, with no wildcard but the @connections/* path, and
    on @connections only POST: the worker never reads (GET) or closes (DELETE) a connection."""
    s = default_synth if which == "default" else existing_synth
    api, stage = (
        ("${" + logical_id(s, "AWS::ApiGatewayV2::Api", "WebSocketApi") + "}", "production")
        if which == "default"
        else (EXISTING["apiId"], EXISTING["stage"])
    )
    role_id = logical_id(s, "AWS::IAM::Role", "TaskRole")
    statements = role_statements(s, role_id)
    assert statements
    granted: dict[str, set[str]] = {}
    for st in statements:
        assert st["Effect"] == "Allow"
        assert "NotAction" not in st and "NotResource" not in st
        for action in as_list(st["Action"]):
            assert "*" not in action, f"wildcard action {action}"
            for resource in as_list(st["Resource"]):
                text = render(resource)
                if "*" in text:
                    m = CONNECTIONS.match(text)
                    assert m, f"wildcard resource {text} for {action}"
                    assert (m["api"], m["stage"]) == (api, stage)
                    assert action == "execute-api:ManageConnections"
                granted.setdefault(action, set()).add(text)
    queue = "${" + logical_id(s, "AWS::SQS::Queue", "EventsQueue") + ".Arn}"
    dlq = "${" + logical_id(s, "AWS::SQS::Queue", "DeadLetterQueue") + ".Arn}"
    assert granted == {
        "execute-api:ManageConnections": {
            f"arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:{api}/{stage}/POST/@connections/*"
        },
        "sqs:ReceiveMessage": {queue},
        "sqs:DeleteMessage": {queue},
        "sqs:ChangeMessageVisibility": {queue},
        "sqs:GetQueueAttributes": {queue},
        "sqs:GetQueueUrl": {queue},
        "sqs:SendMessage": {queue, dlq},
    }


def test_execution_role_reads_only_the_mongo_secret(existing_synth: Synth) -> None:
    """ECS's execution role reads only the Mongo secret and injects the URI from its JSON key."""
    role_id = logical_id(existing_synth, "AWS::IAM::Role", "WorkerTaskExecutionRole")
    for st in role_statements(existing_synth, role_id):
        for action in as_list(st["Action"]):
            assert "*" not in action
            for resource in as_list(st["Resource"]):
                if render(resource) == "*":
                    assert action == "ecr:GetAuthorizationToken"  # the one ECR call that takes no resource
                if action.startswith("secretsmanager:"):
                    assert render(resource) == EXISTING["mongoSecretArn"]
    [secret] = container(existing_synth)["Secrets"]
    assert secret == {"Name": "FANOUT_MONGO_URI", "ValueFrom": EXISTING["mongoSecretArn"] + ":uri::"}


ECR_PULL = {"ecr:BatchCheckLayerAvailability", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"}


def pulls(s: Synth) -> dict[str, set[str]]:
    """The execution role's ECR grants: action -> the resources it is granted on, rendered."""
    role_id = logical_id(s, "AWS::IAM::Role", "WorkerTaskExecutionRole")
    granted: dict[str, set[str]] = {}
    for st in role_statements(s, role_id):
        for action in as_list(st["Action"]):
            if action.startswith("ecr:"):
                granted.setdefault(action, set()).update(render(r) for r in as_list(st["Resource"]))
    return granted


def test_execution_role_pulls_a_given_ecr_image_from_its_repository_only(
    existing_synth: Synth, tmp_path: Any
) -> None:
    """An image given as a private ECR URI (the documented `-c image=REPO:TAG`) is pullable: ECS pulls it
    with the execution role, which gets the pull on that one repository and the registry token, no more;
    an image outside ECR gets no ECR grant at all."""
    repository = "arn:${AWS::Partition}:ecr:eu-west-1:111122223333:repository/fanout"
    assert pulls(existing_synth) == {
        **{action: {repository} for action in ECR_PULL},
        "ecr:GetAuthorizationToken": {"*"},
    }
    by_digest = synth(
        tmp_path / "digest",
        EXISTING | {"image": f"111122223333.dkr.ecr.eu-west-1.amazonaws.com/team/fanout@sha256:{'a' * 64}"},
    )
    assert pulls(by_digest)["ecr:BatchGetImage"] == {repository.replace("/fanout", "/team/fanout")}
    public = synth(tmp_path / "public", EXISTING | {"image": "ghcr.io/example/fanout:1.2.3"})
    assert pulls(public) == {}
    assert container(public)["Image"] == "ghcr.io/example/fanout:1.2.3"


def test_publisher_policy(default_synth: Synth) -> None:
    """Publishers get send on the queue and publish on the topic, and the stack outputs both."""
    _, policy = default_synth.one("AWS::IAM::ManagedPolicy")
    queue_id = logical_id(default_synth, "AWS::SQS::Queue", "EventsQueue")
    topic_id = logical_id(default_synth, "AWS::SNS::Topic", "EventsTopic")
    assert policy["Properties"]["ManagedPolicyName"] == "FanoutPublisherPolicy"
    assert "Roles" not in policy["Properties"]  # domain services attach it to their own roles
    statements = {
        (action, json.dumps(st["Resource"], sort_keys=True))
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
        for action in as_list(st["Action"])
    }
    assert statements == {
        ("sqs:SendMessage", json.dumps({"Fn::GetAtt": [queue_id, "Arn"]})),
        ("sqs:GetQueueUrl", json.dumps({"Fn::GetAtt": [queue_id, "Arn"]})),
        ("sns:Publish", json.dumps({"Ref": topic_id})),
    }
    outputs = default_synth.template["Outputs"]
    assert {"QueueUrl", "TopicArn", "PublisherPolicyArn"} <= set(outputs)


# ---- the service ----------------------------------------------------------------------------------------


def test_container_health_check_and_stop_timeout(default_synth: Synth) -> None:
    """The container checks /healthz and gets the shutdown budget plus 10 s to stop."""
    from fanout_cdk import service

    c = container(default_synth)
    assert c["StopTimeout"] == service.SHUTDOWN_BUDGET_S + 10 == service.STOP_TIMEOUT_S <= 120
    assert env_of(default_synth)["FANOUT_SHUTDOWN_BUDGET_S"] == str(service.SHUTDOWN_BUDGET_S)
    check = c["HealthCheck"]
    assert check["Command"][0] == "CMD"
    assert f"http://127.0.0.1:{service.METRICS_PORT}/healthz" in check["Command"][-1]
    assert check["Retries"] >= 2 and check["StartPeriod"] > 0
    assert c["LogConfiguration"]["LogDriver"] == "awslogs"
    assert c["Essential"] is True


def test_worker_settings(default_synth: Synth, existing_synth: Synth) -> None:
    """The container runs the production worker with settings that Settings knows."""
    env = env_of(default_synth)
    assert env["FANOUT_ENV"] == "production"
    assert env["FANOUT_METRICS_HOST"] == "0.0.0.0"
    assert env["FANOUT_CLOUDWATCH_EMF"] == "true"
    assert env["FANOUT_CLOUDWATCH_NAMESPACE"] == NAMESPACE
    assert env["FANOUT_REGION"] == {"Ref": "AWS::Region"}
    assert env["FANOUT_QUEUE_URL"] == {"Ref": logical_id(default_synth, "AWS::SQS::Queue", "EventsQueue")}
    assert env["FANOUT_DLQ_URL"] == {"Ref": logical_id(default_synth, "AWS::SQS::Queue", "DeadLetterQueue")}
    assert container(default_synth)["Command"] == ["worker", "--processes", "1"]  # one per vCPU
    assert container(existing_synth)["Command"] == ["worker", "--processes", "2"]
    # Settings ignores unknown FANOUT_* variables: a misspelt one here would be silently dropped.
    for which in (default_synth, existing_synth):
        names = set(env_of(which)) | {s["Name"] for s in container(which).get("Secrets", [])}
        unknown = {n for n in names if n.removeprefix("FANOUT_").lower() not in Settings.model_fields}
        assert not unknown, f"not fanout settings: {sorted(unknown)}"


def test_worker_never_calls_get_or_delete_on_connections() -> None:
    """The worker's code has no GET or DELETE on @connections, so a POST-only role is all it needs."""
    worker = REPO_ROOT / "src" / "fanout" / "worker"
    for path in [*worker.glob("*.py"), *(REPO_ROOT / "src" / "fanout" / "cli").glob("*.py")]:
        text = path.read_text()
        assert not re.search(r"management\.(get|delete)\(|\.delete\(conn|\.get\(conn", text), path
    assert re.search(r"\.post\(", (worker / "lanes.py").read_text())


@pytest.mark.parametrize("which", ["default", "existing"])
def test_container_runs_as_the_images_non_root_user(
    which: str, default_synth: Synth, existing_synth: Synth
) -> None:
    """The task definition itself runs the worker as the Dockerfile's non-root user, so an image given
    with `-c image=` runs unprivileged too, whatever its own USER says."""
    from fanout_cdk import service

    s = default_synth if which == "default" else existing_synth
    dockerfile_user = re.search(r"^USER (\S+)$", (REPO_ROOT / "Dockerfile").read_text(), re.MULTILINE)
    assert dockerfile_user
    assert container(s).get("User") == dockerfile_user[1]
    assert service.CONTAINER_USER == dockerfile_user[1]
    uid, _, gid = service.CONTAINER_USER.partition(":")
    assert int(uid) > 0 and int(gid) > 0


@pytest.mark.parametrize("which", ["default", "existing"])
def test_root_filesystem_is_read_only_with_a_writable_tmp(
    which: str, default_synth: Synth, existing_synth: Synth
) -> None:
    """The container's root filesystem is read-only; /tmp, where the worker writes, is a task volume."""
    from fanout_cdk import service

    s = default_synth if which == "default" else existing_synth
    c = container(s)
    assert c["ReadonlyRootFilesystem"] is True
    [mount] = c["MountPoints"]
    assert (mount["ContainerPath"], mount["ReadOnly"]) == (service.TMP_DIR, False) == ("/tmp", False)  # noqa: S108
    _, task = s.one("AWS::ECS::TaskDefinition")
    [volume] = task["Properties"]["Volumes"]
    assert volume == {"Name": mount["SourceVolume"]}  # no host path, no EFS: the task's ephemeral storage


def test_worker_writes_only_in_the_temporary_directory() -> None:
    """Nothing in the worker's code writes a file outside tempfile's directory (TMPDIR, /tmp in the task)."""
    writes = re.compile(r"\bopen\([^)]*[\"'][wax]b?[\"']|\.write_(text|bytes)\(|\bmkdtemp\(|\bmkstemp\(")
    found = {
        str(path.relative_to(REPO_ROOT))
        for path in (REPO_ROOT / "src" / "fanout").rglob("*.py")
        if "local" not in path.parts and "bench" not in path.parts and writes.search(path.read_text())
    }
    developer_commands = {
        "src/fanout/cli/schema.py",  # `fanout schema --out PATH`: a file the developer names
        "src/fanout/catalog/compat.py",  # `python -m fanout.catalog.compat --update`: the committed snapshot
    }
    assert {"src/fanout/worker/pool.py"} == found - developer_commands  # mkdtemp for the multiprocess metrics
    assert "tempfile.mkdtemp(" in (REPO_ROOT / "src" / "fanout" / "worker" / "pool.py").read_text()


def test_worker_posts_only_to_its_api(default_synth: Synth, existing_synth: Synth) -> None:
    """FANOUT_API_IDS is the API the stack made, or the one given: posts go nowhere else."""
    api = logical_id(default_synth, "AWS::ApiGatewayV2::Api", "WebSocketApi")
    assert env_of(default_synth)["FANOUT_API_IDS"] == {"Ref": api}
    assert env_of(existing_synth)["FANOUT_API_IDS"] == EXISTING["apiId"]
    assert Settings(api_ids=EXISTING["apiId"]).api_ids == {EXISTING["apiId"]}


def test_default_creates_vpc_and_cluster_and_builds_the_image(default_synth: Synth) -> None:
    """With no parameters the stack makes its own VPC and cluster and builds the Dockerfile."""
    assert default_synth.resources("AWS::EC2::VPC")
    _, cluster = default_synth.one("AWS::ECS::Cluster")
    assert {"Name": "containerInsights", "Value": "enabled"} in cluster["Properties"]["ClusterSettings"]
    image = render(container(default_synth)["Image"])
    assert "container-assets" in image  # the Dockerfile as a CDK image asset, built at deploy time
    _, service = default_synth.one("AWS::ECS::Service")
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    assert service["Properties"]["DeploymentConfiguration"]["DeploymentCircuitBreaker"]["Rollback"] is True


def test_existing_vpc_cluster_and_image(existing_synth: Synth) -> None:
    """Given a VPC, subnets, cluster, image and alarm topic, the stack uses them and creates none."""
    assert not existing_synth.resources("AWS::EC2::VPC")
    assert not existing_synth.resources("AWS::ECS::Cluster")
    assert not existing_synth.resources("AWS::SNS::Topic").keys() - {
        logical_id(existing_synth, "AWS::SNS::Topic", "EventsTopic")
    }
    _, service = existing_synth.one("AWS::ECS::Service")
    assert service["Properties"]["Cluster"] == "platform"
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["Subnets"] == ["subnet-0aaaaaaaaaaaaaaa1", "subnet-0bbbbbbbbbbbbbbb2"]
    assert container(existing_synth)["Image"] == EXISTING["image"]
    for alarm in existing_synth.resources("AWS::CloudWatch::Alarm").values():
        if str(alarm["Properties"].get("AlarmName", "")).startswith("fanout-"):  # not the scaling ones
            assert alarm["Properties"]["AlarmActions"] == [EXISTING["alarmTopicArn"]]


# ---- autoscaling ------------------------------------------------------------------------------------------


def test_scaling_on_backlog_per_task_and_oldest_message_age(default_synth: Synth) -> None:
    """The service scales on backlog per task and on the age of the oldest message."""
    _, target = default_synth.one("AWS::ApplicationAutoScaling::ScalableTarget")
    assert (target["Properties"]["MinCapacity"], target["Properties"]["MaxCapacity"]) == (1, 10)
    policies = default_synth.resources("AWS::ApplicationAutoScaling::ScalingPolicy")
    tracking = [
        p["Properties"] for p in policies.values() if p["Properties"]["PolicyType"] == "TargetTrackingScaling"
    ]
    [tt] = tracking
    spec = tt["TargetTrackingScalingPolicyConfiguration"]["CustomizedMetricSpecification"]
    assert set(spec) == {"Metrics"}  # metric math only: CloudFormation rejects a mix with MetricName
    stats = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in spec["Metrics"] if "MetricStat" in m}
    assert stats == {"visible": "ApproximateNumberOfMessagesVisible", "running": "RunningTaskCount"}
    [expr] = [m for m in spec["Metrics"] if m.get("ReturnData")]
    assert "visible /" in expr["Expression"] and "running" in expr["Expression"]
    assert tt["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 200
    steps = {k: p for k, p in policies.items() if p["Properties"]["PolicyType"] == "StepScaling"}
    assert steps
    step_alarms = [
        a["Properties"]
        for a in default_synth.resources("AWS::CloudWatch::Alarm").values()
        if any(act.get("Ref") in steps for act in a["Properties"].get("AlarmActions", []))
    ]
    assert [a["MetricName"] for a in step_alarms] == ["ApproximateAgeOfOldestMessage"]


# ---- parameters ---------------------------------------------------------------------------------------------


def test_dummy_defaults_are_flagged(default_synth: Synth) -> None:
    """Synthesis warns about every required parameter left at its dummy value."""
    from aws_cdk.assertions import Annotations, Match

    annotations = Annotations.from_stack(default_synth.stack)
    annotations.has_warning("*", Match.string_like_regexp("jwtSecretArn.*dummy"))
    annotations.has_warning("*", Match.string_like_regexp("mongoSecretArn.*dummy"))
    annotations.has_no_warning("*", Match.string_like_regexp("apiId"))


def test_worker_alone_needs_no_token_key(existing_synth: Synth) -> None:
    """With an existing API the stack makes no lifecycle, so it neither reads nor asks for the token key."""
    from aws_cdk.assertions import Annotations, Match

    Annotations.from_stack(existing_synth.stack).has_no_warning("*", Match.string_like_regexp("dummy"))


def test_the_cdk_cli_refuses_placeholder_secret_arns(tmp_path: Any) -> None:
    """Run as the cdk CLI runs it (`cdk synth`, `diff`, `deploy`: CDK_CONTEXT_JSON, CDK_OUTDIR), the app
    refuses the dummy secret ARNs with one line naming them, and writes no template."""
    context = json.loads((REPO_ROOT / "deploy" / "cdk.json").read_text())["context"]
    cdk_env = {"CDK_CONTEXT_JSON": json.dumps(context), "CDK_OUTDIR": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, str(REPO_ROOT / "deploy" / "app.py")],
        env={**os.environ, **cdk_env}, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert 2 == result.returncode, result.stderr
    assert result.stderr.startswith(
        "app.py: error: placeholder secret ARNs (account 123456789012) cannot be deployed: "
        "mongoSecretArn, jwtSecretArn; pass the real secrets' ARNs"
    )
    assert 1 == result.stderr.count("\n") and "Traceback" not in result.stderr
    assert not list(tmp_path.glob("*.template.json"))


@pytest.mark.parametrize(
    ("context", "refused"),
    [
        ({"mongoSecretArn": EXISTING["mongoSecretArn"]}, "jwtSecretArn"),
        (  # an example copied: a placeholder even when given
            CUSTOM_API | {"mongoSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:m-AbCdEf"},
            "mongoSecretArn",
        ),
        ({"apiId": "a1b2c3d4e5"}, "mongoSecretArn"),
    ],
    ids=["token key", "copied example", "worker alone"],
)
def test_a_production_synth_names_each_placeholder(
    app_module: Any, tmp_path: Any, context: dict[str, str], refused: str
) -> None:
    """A production synth refuses each placeholder secret ARN the stack would read, and only those."""
    with pytest.raises(ValueError, match=f"cannot be deployed: {refused}; pass the real secrets' ARNs") as e:
        app_module.build_app(context, str(tmp_path), deploying=True)
    assert f"-c {refused}=" in str(e.value)


@pytest.mark.parametrize("context", [CUSTOM_API, EXISTING], ids=["new API", "worker alone"])
def test_a_production_synth_takes_real_secret_arns(
    app_module: Any, tmp_path: Any, context: dict[str, str]
) -> None:
    """With every secret it reads given (the worker alone reads no token key), a production synth builds."""
    _, stack = app_module.build_app(context, str(tmp_path), deploying=True)
    assert "Fanout" == stack.stack_name


@pytest.mark.parametrize(
    ("context", "message"),
    [
        ({"apiId": "not-an-id"}, "apiId"),
        ({"vpcId": "vpc-0123456789abcdef0"}, "subnetIds"),
        ({"cpu": "lots"}, "cpu"),
        ({"processes": "0"}, "'processes' must be at least 1"),
        # a wildcard would widen the task role's @connections grant, or the secret reads, past the one named
        ({"apiId": "a1b2c3d4e5", "stage": "*"}, "stage name"),
        ({"mongoSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:*"}, "mongoSecretArn"),
        ({"jwtSecretArn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:fanout/?"}, "jwtSecretArn"),
        ({"mongoSecretArn": "fanout/mongo"}, "must be a secret's ARN"),
        ({"logRetentionDays": "31"}, "logRetentionDays"),
        ({"throttleRate": "fast"}, "throttleRate"),
        ({"apiGatewayLogsRole": "maybe"}, "apiGatewayLogsRole"),
        ({"domainName": "ws.example.com"}, "certificateArn"),
    ],
)
def test_bad_parameters_are_refused(tmp_path: Any, context: dict[str, str], message: str) -> None:
    """A malformed parameter stops synthesis with a message naming it."""
    with pytest.raises(Exception, match=message):
        synth(tmp_path, context)


def test_synth_names_a_bad_parameter_in_one_line(
    app_module: Any, tmp_path: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """`make deploy-synth CONTEXT="cpu=lots"` (app.py run directly) exits 2 with one line naming the
    parameter, not a traceback."""
    with pytest.raises(SystemExit) as exit_:
        app_module.main(["-c", "cpu=lots", "--outdir", str(tmp_path)])
    assert 2 == exit_.value.code
    err = capsys.readouterr().err
    assert err.endswith("error: context parameter 'cpu' must be an integer, got 'lots'\n")
    assert "Traceback" not in err and 1 == err.count("\n")


# ---- cfn-lint ----------------------------------------------------------------------------------------------


def test_cfn_lint_is_clean(default_synth: Synth, existing_synth: Synth, custom_api_synth: Synth) -> None:
    """cfn-lint finds nothing in any synthesized template."""
    paths = [str(s.path) for s in (default_synth, existing_synth, custom_api_synth)]
    result = subprocess.run(
        [tool("cfn-lint"), "--", *paths],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
