"""Settings: checked once, with the same rules wherever they are built."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from fanout.config import DEV_JWT_SECRET, Settings
from fanout.errors import ConfigError


def test_dev_defaults_reach_the_local_stack() -> None:
    """With no settings, everything targets the local stack and the development key."""
    s = Settings()
    assert ("http://127.0.0.1:9324", "mongodb://127.0.0.1:27018") == (s.sqs_endpoint(), s.mongo())
    assert DEV_JWT_SECRET == s.jwt_key()
    assert "console" == s.log_format


def test_production_assumes_no_local_default() -> None:
    """In production the endpoints are AWS's own, logs are JSON, and MongoDB and the key must be given."""
    s = Settings(env="production")
    assert s.sqs_endpoint() is None
    assert "json" == s.log_format
    with pytest.raises(ConfigError, match="FANOUT_MONGO_URI"):
        s.mongo()
    with pytest.raises(ConfigError, match="FANOUT_JWT_SECRET"):
        s.jwt_key()


def test_require_names_every_missing_setting_at_once() -> None:
    """A command's needs are checked together, and an ARN counts as given."""
    with pytest.raises(ConfigError) as caught:
        Settings(env="production").require(("queue", "mongo", "jwt"))
    assert all(
        name in str(caught.value) for name in ("FANOUT_QUEUE_URL", "FANOUT_MONGO_URI", "FANOUT_JWT_SECRET")
    )
    Settings(
        env="production",
        queue_url="https://q",
        mongo_secret_arn="arn:m",  # noqa: S106 - an ARN, not a secret
        jwt_secret_arn="arn:j",  # noqa: S106
    ).require(("queue", "mongo", "jwt"))
    Settings().require(("queue", "mongo", "jwt"))  # dev defaults everything


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"jwt_secret": "short"}, "at least 32 bytes"),
        ({"env": "production", "jwt_secret": DEV_JWT_SECRET}, "development key"),
        ({"receive_wait_s": 21}, "less than or equal to 20"),
        ({"max_receives": 1}, "greater than or equal to 2"),
        ({"env": "staging"}, "'dev' or 'production'"),
    ],
)
def test_bad_values_are_refused_when_built(fields: dict[str, object], message: str) -> None:
    """A short or development key in production, or an out-of-range value, fails at construction."""
    with pytest.raises(ValidationError, match=message):
        Settings(**fields)  # type: ignore[arg-type]


def test_local_aws_credentials_only_in_dev() -> None:
    """Dummy credentials are added against the local stack only; production uses the provider chain."""
    assert "aws_access_key_id" in Settings().aws_client_kwargs()
    assert "aws_access_key_id" not in Settings(env="production").aws_client_kwargs()
