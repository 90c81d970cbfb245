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


def load(settings: Settings) -> Settings:
    """``settings`` with every secret named by ARN filled in (values set directly win)."""
    wanted = {
        "jwt_secret": (settings.jwt_secret is None and settings.jwt_secret_arn, None),
        "mongo_uri": (settings.mongo_uri is None and settings.mongo_secret_arn, settings.mongo_secret_field),
    }
    if not any(arn for arn, _ in wanted.values()):
        return settings
    client = boto3.client("secretsmanager", **settings.aws_client_kwargs())  # type: ignore[call-overload]
    try:
        values = {name: _fetch(client, arn, field) for name, (arn, field) in wanted.items() if arn}
    finally:
        client.close()
    data = settings.model_dump() | {name: SecretStr(v) for name, v in values.items()}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
