"""Fixtures for the deployment tests: the CDK app synthesized (no AWS account, no Docker), the tools.

Each synthesized variant is made once per session; the lifecycle Lambda's code is bundled once per session
too (``FANOUT_LAMBDA_BUNDLE_CACHE`` points at a session folder) and copied into every variant's assembly.

Nothing here is skipped for a missing tool: the deploy extra (``pip install -e '.[dev,deploy]'``, which
``make test`` does) brings aws-cdk-lib, constructs, cfn-lint and hadolint; without it these tests fail
and say so.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
DEPLOY_DIR = REPO_ROOT / "deploy"
INSTALL_HINT = "install the deploy extra: `make setup` or `.venv/bin/pip install -e '.[dev,deploy]'`"

# CDK's Python library drives node through jsii; keep its Node-version banner out of the test output.
os.environ.setdefault("JSII_SILENCE_WARNING_END_OF_LIFE_NODE_VERSION", "20")
os.environ.setdefault("JSII_SILENCE_WARNING_DEPRECATED_NODE_RELEASE", "1")
os.environ.setdefault("JSII_SILENCE_WARNING_UNTESTED_NODE_VERSION", "1")
if str(DEPLOY_DIR) not in sys.path:
    sys.path.insert(0, str(DEPLOY_DIR))  # as app.py does: fanout_stack, fanout_cdk, metrics_contract


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "slow: builds and installs the wheel (seconds, through uv); still part of make test"
    )


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests that synthesize share one test process (``make test`` runs one per core): each
    session-scoped synth then runs once, not once per process."""
    here = Path(__file__).parent
    for item in items:
        if item.path.is_relative_to(here) and item.path.name != "test_image.py":
            item.add_marker(pytest.mark.xdist_group("cdk"))


def tool(name: str) -> str:
    """A console script of the deploy extra: next to this interpreter first, then on PATH; else fail."""
    here = Path(sys.executable).parent / name
    found = str(here) if here.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"`{name}` not found: {INSTALL_HINT}")
    return found


@pytest.fixture(scope="session", autouse=True)
def _bundle_once(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every synth of this session reuses one bundle of the lifecycle Lambda's code."""
    os.environ["FANOUT_LAMBDA_BUNDLE_CACHE"] = str(tmp_path_factory.mktemp("lambda-bundles"))
    yield
    os.environ.pop("FANOUT_LAMBDA_BUNDLE_CACHE", None)


def _load_app() -> ModuleType:
    try:
        import aws_cdk  # noqa: F401
    except ImportError as exc:
        pytest.fail(f"aws-cdk-lib is not installed ({exc}): {INSTALL_HINT}")
    spec = importlib.util.spec_from_file_location("fanout_deploy_app", DEPLOY_DIR / "app.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Synth:
    """One synthesized stack: the template as a dict, its file (for cfn-lint), the stack object."""

    template: dict[str, Any]
    path: Path
    stack: Any

    def resources(self, type_: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.template["Resources"].items() if v["Type"] == type_}

    def one(self, type_: str) -> tuple[str, dict[str, Any]]:
        found = self.resources(type_)
        assert len(found) == 1, f"expected one {type_}, found {sorted(found)}"
        return next(iter(found.items()))

    def lambda_asset(self) -> Path:
        """The lifecycle Lambda's bundled code folder in the cloud assembly."""
        _, function = self.one("AWS::Lambda::Function")
        key = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
        return self.path.parent / f"asset.{key}"


def synth(tmp: Path, context: dict[str, str]) -> Synth:
    app_module = _load_app()
    app, stack = app_module.build_app(context, str(tmp))
    assembly = app.synth()
    path = Path(assembly.directory) / stack.template_file
    return Synth(json.loads(path.read_text()), path, stack)


@pytest.fixture(scope="session")
def app_module() -> ModuleType:
    return _load_app()


@pytest.fixture(scope="session")
def default_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """No parameters at all: a new WebSocket API and lifecycle Lambda, dummy secrets, a new VPC and cluster,
    the image built from the Dockerfile."""
    return synth(tmp_path_factory.mktemp("cdk-default"), {})


EXISTING = {
    "apiId": "a1b2c3d4e5",
    "stage": "prod",
    "mongoSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/fanout/mongo-Zx9Yw8",
    "mongoSecretField": "uri",
    "vpcId": "vpc-0123456789abcdef0",
    "subnetIds": "subnet-0aaaaaaaaaaaaaaa1, subnet-0bbbbbbbbbbbbbbb2",
    "clusterName": "platform",
    "image": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/fanout:1.2.3",
    "processes": "2",
    "alarmTopicArn": "arn:aws:sns:eu-west-1:111122223333:oncall",
}


@pytest.fixture(scope="session")
def existing_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """Every worker parameter given: an existing API (so the worker alone), VPC, subnets, cluster, image,
    alarm topic."""
    return synth(tmp_path_factory.mktemp("cdk-existing"), EXISTING)


CUSTOM_API = {
    "stage": "live",
    "mongoSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/fanout/mongo-Zx9Yw8",
    "mongoSecretField": "uri",
    "jwtSecretArn": "arn:aws:secretsmanager:eu-west-1:111122223333:secret:prod/fanout/jwt",  # partial ARN
    "jwtAudience": "realtime",
    "throttleRate": "300",
    "throttleBurst": "600",
    "domainName": "ws.example.com",
    "certificateArn": "arn:aws:acm:eu-west-1:111122223333:certificate/0a1b2c3d-1111-2222-3333-444455556666",
    "apiGatewayLogsRole": "false",
    "vpcId": "vpc-0123456789abcdef0",
    "subnetIds": "subnet-0aaaaaaaaaaaaaaa1,subnet-0bbbbbbbbbbbbbbb2",
    "image": "111122223333.dkr.ecr.eu-west-1.amazonaws.com/fanout:1.2.3",
}


@pytest.fixture(scope="session")
def custom_api_synth(tmp_path_factory: pytest.TempPathFactory) -> Synth:
    """A new API with every API parameter given: custom domain, throttling, audience, a partial secret ARN,
    an existing VPC, no account-wide logs role."""
    return synth(tmp_path_factory.mktemp("cdk-custom-api"), CUSTOM_API)
