"""Secrets named by ARN (``FANOUT_JWT_SECRET_ARN``, ``FANOUT_MONGO_SECRET_ARN``), read from AWS Secrets
Manager once at start-up. A Lambda has no ECS secret injection, so the lifecycle handler needs this."""

from __future__ import annotations

import json
import re
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


#: A region as AWS names them (``eu-west-1``, ``us-gov-west-1``, ``cn-north-1``).
_REGION = re.compile(r"[a-z]{2,}(-[a-z]+)+-[0-9]{1,2}")


def region_of(arn: str, settings: Settings) -> str:
    """The region a secret lives in: the one its ARN names (``arn:aws:secretsmanager:<region>:...``), else
    ``FANOUT_REGION`` (a secret given by name). ``ConfigError`` for an ARN naming no valid region."""
    parts = arn.split(":")
    if len(parts) < 7 or parts[0] != "arn" or parts[2] != "secretsmanager" or not parts[3]:
        return settings.region
    if not _REGION.fullmatch(parts[3]):
        raise ConfigError(f"secret {parts[-1]}: its ARN names no AWS region ({parts[3][:32]!r})")
    return parts[3]


def client(settings: Settings, arn: str | None = None) -> Any:
    """A Secrets Manager client: the local stack's in dev (moto serves it beside SQS), otherwise AWS's own
    endpoint in the region of ``arn`` (``FANOUT_REGION`` without one): a client of another region cannot
    read it. ``FANOUT_AWS_ENDPOINT_URL`` names SQS/SNS, so production never sends it there."""
    if settings.is_dev:
        kwargs = settings.aws_client_kwargs()
    else:
        region = settings.region if arn is None else region_of(arn, settings)
        kwargs = {"region_name": region, "config": settings.aws_config()}
    return boto3.client("secretsmanager", **kwargs)


def load(settings: Settings, secrets_client: Any = None) -> Settings:
    """``settings`` with every secret named by ARN filled in (values set directly win); read through
    ``secrets_client`` when given (a test's), else through ``client(settings, arn)``, one per region."""
    wanted = {
        "jwt_secret": (settings.jwt_secret is None and settings.jwt_secret_arn, None),
        "mongo_uri": (settings.mongo_uri is None and settings.mongo_secret_arn, settings.mongo_secret_field),
    }
    opened: dict[str, Any] = {}  # region -> client

    def reader(arn: str) -> Any:
        if secrets_client is not None:
            return secrets_client
        region = settings.region if settings.is_dev else region_of(arn, settings)
        if region not in opened:
            opened[region] = client(settings, arn)
        return opened[region]

    try:
        values = {name: _fetch(reader(arn), arn, field) for name, (arn, field) in wanted.items() if arn}
    finally:
        for sm in opened.values():
            sm.close()
    if not values:
        return settings
    data = settings.model_dump() | {name: SecretStr(v) for name, v in values.items()}
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None
