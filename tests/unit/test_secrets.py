"""Secrets named by ARN come from Secrets Manager: moto's in dev, AWS's own endpoint in production, never
the SQS/SNS endpoint override."""

from __future__ import annotations

import json
from secrets import token_hex

import pytest

from fanout import secrets
from fanout.config import Settings
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
