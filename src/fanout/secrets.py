"""Secrets named by ARN (``FANOUT_JWT_SECRET_ARN``, ``FANOUT_MONGO_SECRET_ARN``), read from AWS Secrets
Manager once at start-up. A Lambda has no ECS secret injection, so the lifecycle handler needs this."""

from __future__ import annotations

import json
from typing import Any

import boto3
from pydantic import SecretStr, ValidationError

from fanout.config import Settings, describe
from fanout.errors import ConfigError


def _fetch(client: Any, arn: str, field: str | None) -> str:
    try:
        value = client.get_secret_value(SecretId=arn)["SecretString"]
    except Exception as exc:
        raise ConfigError(f"cannot read secret {arn.rsplit(':', 1)[-1]}: {type(exc).__name__}") from None
    if field is None:
        return str(value)
    try:
        return str(json.loads(value)[field])
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"secret {arn.rsplit(':', 1)[-1]} has no JSON key {field!r}") from None


def client(settings: Settings) -> Any:
    """A Secrets Manager client: the local stack's in dev (moto serves it beside SQS), AWS's own regional
    endpoint otherwise. ``FANOUT_AWS_ENDPOINT_URL`` names SQS/SNS, so production never sends it there."""
    kwargs = (
        settings.aws_client_kwargs()
        if settings.is_dev
        else {"region_name": settings.region, "config": settings.aws_config()}
    )
    return boto3.client("secretsmanager", **kwargs)


def load(settings: Settings, secrets_client: Any = None) -> Settings:
    """``settings`` with every secret named by ARN filled in (values set directly win); read through
    ``secrets_client`` when given (a test's), else through ``client(settings)``."""
    wanted = {
        "jwt_secret": (settings.jwt_secret is None and settings.jwt_secret_arn, None),
        "mongo_uri": (settings.mongo_uri is None and settings.mongo_secret_arn, settings.mongo_secret_field),
    }
    if not any(arn for arn, _ in wanted.values()):
        return settings
    sm = client(settings) if secrets_client is None else secrets_client
    try:
        values = {name: _fetch(sm, arn, field) for name, (arn, field) in wanted.items() if arn}
    finally:
        if secrets_client is None:
            sm.close()
    data = settings.model_dump() | {name: SecretStr(v) for name, v in values.items()}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
