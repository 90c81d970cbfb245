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


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"jwks_url": "https://login.example.test/jwks.json"}, "needs FANOUT_JWT_ISSUER"),
        ({"env": "production", "jwks_url": "http://login/jwks.json", "jwt_issuer": "i"}, "must be https"),
        ({"ticket_ttl_s": 61}, "less than or equal to 60"),
        ({"forward_actions": "chat.send,notification.subscribe"}, "answered by fanout itself"),
        ({"forward_actions": "Chat Send"}, "not an action name"),
        ({"forward_max_bytes": 40_000}, "less than or equal to 32768"),
    ],
)
def test_access_settings_are_checked_when_built(fields: dict[str, object], message: str) -> None:
    """A JWKS without an issuer, a plain-HTTP JWKS in production, a ticket over 60 s, or a forwarded
    action that fanout answers itself (or that is no action name) fails at construction."""
    with pytest.raises(ValidationError, match=message):
        Settings(**fields)  # type: ignore[arg-type]


def test_forward_actions_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """FANOUT_FORWARD_ACTIONS=a.b, c.d becomes a set of action names."""
    monkeypatch.setenv("FANOUT_FORWARD_ACTIONS", "event.checkin, chat.react,")
    assert frozenset({"event.checkin", "chat.react"}) == Settings().forward_actions


def test_a_jwks_or_tickets_only_lifecycle_needs_no_shared_key() -> None:
    """In production a JWKS URL stands in for the HS256 key, and with JWT connect off no key is needed;
    without a secret there is no HS256 key at all."""
    jwks = Settings(env="production", jwks_url="https://login.example.test/jwks.json", jwt_issuer="i")
    jwks.require(("jwt",))
    assert jwks.hs256_key() is None
    Settings(env="production", jwt_connect=False).require(("jwt",))
    with pytest.raises(ConfigError, match="FANOUT_JWKS_URL"):
        Settings(env="production").require(("jwt",))
