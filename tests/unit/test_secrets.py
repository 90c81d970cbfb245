"""Secrets named by ARN come from Secrets Manager: moto's in dev, AWS's own endpoint in production, never
the SQS/SNS endpoint override."""

from __future__ import annotations

import json
from secrets import token_hex
from typing import Any

import boto3
import pytest

from fanout import secrets
from fanout.config import Settings
from fanout.errors import ConfigError
from tests.conftest import Server, dev_settings

KEY = "k" * 40
VPCE = "https://vpce-0a1b2c3d4e5f67890-abcdefgh.sqs.us-east-1.vpce.amazonaws.com"


@pytest.mark.parametrize("override", [None, VPCE, "https://sqs.us-east-1.amazonaws.com"])
def test_production_reads_secrets_from_the_regional_secrets_manager(override: str | None) -> None:
    """In production the Secrets Manager client goes to AWS's endpoint of the region, whatever
    FANOUT_AWS_ENDPOINT_URL says: that override names SQS/SNS, which cannot answer for secrets."""
    settings = Settings(env="production", region="eu-west-1", aws_endpoint_url=override)
    client = secrets.client(settings)
    try:
        assert "https://secretsmanager.eu-west-1.amazonaws.com" == client.meta.endpoint_url
    finally:
        client.close()


def test_dev_reads_secrets_from_the_local_stack(moto_server: Server) -> None:
    """In dev the secrets come from the local stack's endpoint (moto serves Secrets Manager beside SQS)."""
    settings = dev_settings(moto=moto_server)
    admin = secrets.client(settings)
    assert moto_server.url == admin.meta.endpoint_url
    jwt_arn = admin.create_secret(Name=f"jwt-{token_hex(4)}", SecretString=KEY)["ARN"]
    mongo = json.dumps({"uri": "mongodb://db:1"})
    mongo_arn = admin.create_secret(Name=f"mongo-{token_hex(4)}", SecretString=mongo)["ARN"]
    admin.close()
    named = dev_settings(
        moto=moto_server,
        jwt_secret_arn=jwt_arn,
        mongo_secret_arn=mongo_arn,
        mongo_secret_field="uri",  # noqa: S106
    )
    loaded = secrets.load(named)
    assert (KEY, "mongodb://db:1") == (loaded.jwt_key(), loaded.mongo())


def _arn(region: str, name: str = "fanout/jwt-AbCdEf") -> str:
    return f"arn:aws:secretsmanager:{region}:123456789012:secret:{name}"


@pytest.mark.parametrize(
    ("arn", "region"),
    [(_arn("eu-central-1"), "eu-central-1"), (_arn("us-gov-west-1"), "us-gov-west-1"), ("fanout/jwt", "eu-west-1"),
     (None, "eu-west-1")],
)  # fmt: skip
def test_production_reads_a_secret_in_its_arns_region(arn: str | None, region: str) -> None:
    """In production a secret's client is in the region its ARN names, not FANOUT_REGION's (which cannot
    read it); a secret named without an ARN is read in FANOUT_REGION. Inspected, never called."""
    client = secrets.client(Settings(env="production", region="eu-west-1"), arn)
    try:
        assert region == client.meta.region_name
        assert f"https://secretsmanager.{region}.amazonaws.com" == client.meta.endpoint_url
    finally:
        client.close()


class _Stopped(Exception):
    """Raised by the test's hook just before a request would leave the process."""


@pytest.mark.parametrize(
    ("field", "region"), [("jwt_secret_arn", "ap-south-1"), ("mongo_secret_arn", "eu-north-1")]
)
def test_load_sends_each_secrets_request_to_its_arns_region(
    monkeypatch: pytest.MonkeyPatch, field: str, region: str
) -> None:
    """``load`` in production sends GetSecretValue for a secret of another region to that region's endpoint;
    a botocore hook records the request and stops it before it is sent."""
    sent: list[str] = []

    def stop(request: Any, **_: Any) -> None:
        sent.append(request.url)
        raise _Stopped

    session = boto3.Session()
    session.events.register("before-send.secrets-manager", stop)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", session)
    settings = Settings(env="production", region="us-east-1", **{field: _arn(region)})
    with pytest.raises(ConfigError, match="cannot read secret fanout/jwt-AbCdEf: _Stopped"):
        secrets.load(settings)
    assert [f"https://secretsmanager.{region}.amazonaws.com/"] == sent


def test_an_arn_naming_no_region_is_a_config_error() -> None:
    """A secret ARN whose region part is no AWS region fails with a reason naming the secret, before any
    client is made."""
    settings = Settings(env="production", jwt_secret_arn=_arn("evil.example.com/x"))
    with pytest.raises(ConfigError, match="names no AWS region"):
        secrets.load(settings)


def test_dev_reads_a_secret_of_any_arn_region_from_the_local_stack(moto_server: Server) -> None:
    """In dev the ARN's region does not matter: the client is the local stack's."""
    client = secrets.client(dev_settings(moto=moto_server), _arn("eu-central-1"))
    try:
        assert moto_server.url == client.meta.endpoint_url
    finally:
        client.close()
