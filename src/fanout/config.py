"""Settings: one object built from ``FANOUT_*`` environment variables, then passed down."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fanout.errors import ConfigError
from fanout.gateway.endpoints import override_endpoint

LOCAL_AWS_ENDPOINT = "http://127.0.0.1:9324"
LOCAL_MONGO_URI = "mongodb://127.0.0.1:27018"
DEV_JWT_SECRET = "fanout-dev-secret-not-for-production"  # noqa: S105 - a documented local default
_API_ID = re.compile(r"[a-z0-9]{1,64}")


class Settings(BaseSettings):
    """Every knob of fanout. Defaults target the local stack that ``fanout dev`` starts.

    With ``FANOUT_ENV=production`` no local default is assumed: the queue, MongoDB and (for the
    gateway) the JWT secret must be given explicitly.
    """

    model_config = SettingsConfigDict(env_prefix="FANOUT_", extra="ignore", frozen=True)

    env: Literal["dev", "production"] = "dev"

    # AWS (SQS / SNS)
    region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(None, description="SQS/SNS endpoint; the local moto server in dev")
    queue_name: str = "fanout-events"
    queue_url: str | None = None
    bulk_queue_name: str = "fanout-events-bulk"
    bulk_queue_url: str | None = Field(None, description="queue of broadcast shards; none: the events queue")
    dlq_name: str = "fanout-events-dlq"
    dlq_url: str | None = None
    topic_name: str = "fanout-events"
    topic_arn: str | None = None

    # MongoDB
    mongo_uri: SecretStr | None = None
    mongo_secret_arn: str | None = Field(None, description="Secrets Manager secret holding the MongoDB URI")
    mongo_secret_field: str | None = Field(None, description="JSON key of the URI when the secret is JSON")
    mongo_db: str = "fanout"
    connections_collection: str = "websocketconnections"
    mongo_timeout_ms: int = 5000

    # API Gateway management API
    management_endpoint: str | None = Field(
        None, description="Override https://{domainName}/{stage} for every connection (e.g. a VPC endpoint)"
    )
    api_ids: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="API ids that posts may go to, comma-separated; empty: any in the region"
    )
    post_timeout_s: float = 5.0
    post_attempts: int = 4
    max_posts_in_flight: int = 256
    max_posts_per_s: float | None = Field(
        None, gt=0, description="Per-process post rate cap; adaptive on 429s"
    )

    # Worker
    receive_wait_s: int = Field(20, ge=0, le=20)
    visibility_timeout_s: int = Field(30, ge=1, le=43200)
    max_events_in_flight: int = 64
    pollers: int = 2
    shutdown_budget_s: float = 20.0
    max_receives: int = Field(5, ge=2, description="the queue's redrive maxReceiveCount")
    shard_size: int = Field(2000, ge=10, description="connections per shard of a large audience")
    bulk_in_flight: int = Field(2, ge=1, description="shards one process delivers at once")
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9400

    # Local gateway emulator and lifecycle handlers
    gateway_host: str = "127.0.0.1"
    gateway_port: int = 8080
    gateway_stage: str = "local"
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = Field(
        None, description="Secrets Manager secret holding the connect-token key"
    )
    jwt_audience: str | None = None
    topic_policy: str | None = Field(
        None, description="package.module:function deciding gated topic kinds (organization, conversation)"
    )
    connection_ttl_s: int = 7200

    # Ordering and catch-up after reconnect (docs/protocol.md, sections 11 and 12)
    sequences_collection: str = Field("fanoutsequences", description="per-key seq counters")
    history_collection: str = Field("fanouthistory", description="recent events kept for resume (TTL)")
    history_window_s: int = Field(
        900, ge=0, le=7 * 86400, description="how long events are kept; 0: not at all"
    )
    history_max_replay: int = Field(500, ge=1, le=5000, description="events one resume replays at most")

    # Logs
    log_level: str = "INFO"
    log_format: Literal["console", "json"] | None = None

    # CloudWatch metrics as Embedded Metric Format lines on stdout (the ECS awslogs driver extracts them)
    cloudwatch_emf: bool = False
    cloudwatch_namespace: str = "Fanout"
    cloudwatch_interval_s: float = Field(60, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if (self.queue_url or self.queue_name).endswith(".fifo") != (self.dlq_url or self.dlq_name).endswith(
            ".fifo"
        ):
            raise ValueError("a FIFO events queue needs a FIFO dead-letter queue (both names end in .fifo)")
        if self.log_format is None:
            object.__setattr__(self, "log_format", "console" if self.env == "dev" else "json")
        if self.jwt_secret is not None:
            key = self.jwt_secret.get_secret_value()
            if len(key) < 32:
                raise ValueError("FANOUT_JWT_SECRET must be at least 32 bytes for HS256")
            if key == DEV_JWT_SECRET and not self.is_dev:
                raise ValueError("the development key cannot be used outside FANOUT_ENV=dev")
        return self

    def require(self, needs: Iterable[Literal["queue", "mongo", "jwt"]]) -> None:
        """Fail once, naming every missing setting, when a command needs what production cannot default."""
        if self.is_dev:
            return
        missing = []
        if "queue" in needs and not self.queue_url:
            missing.append("FANOUT_QUEUE_URL")
        if "mongo" in needs and self.mongo_uri is None and not self.mongo_secret_arn:
            missing.append("FANOUT_MONGO_URI (or FANOUT_MONGO_SECRET_ARN)")
        if "jwt" in needs and self.jwt_secret is None and not self.jwt_secret_arn:
            missing.append("FANOUT_JWT_SECRET (or FANOUT_JWT_SECRET_ARN)")
        if missing:
            raise ConfigError(f"FANOUT_ENV={self.env} needs {', '.join(missing)}")

    @field_validator("management_endpoint")
    @classmethod
    def _check_management_endpoint(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None:
            override_endpoint(value, dev=info.data.get("env", "dev") == "dev")
        return value

    @field_validator("api_ids", mode="before")
    @classmethod
    def _split_api_ids(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip().lower() for part in value.split(",") if part.strip()]
        for api_id in value:
            if not isinstance(api_id, str) or not _API_ID.fullmatch(api_id):
                raise ValueError(f"{api_id!r} is not an API Gateway API id (lowercase letters and digits)")
        return value

    @property
    def is_dev(self) -> bool:
        return self.env == "dev"

    def sqs_endpoint(self) -> str | None:
        """The SQS/SNS endpoint: explicit, else moto's local port in dev, else AWS's own."""
        if self.aws_endpoint_url:
            return self.aws_endpoint_url
        return LOCAL_AWS_ENDPOINT if self.is_dev else None

    def mongo(self) -> str:
        """The MongoDB URI; required in production."""
        if self.mongo_uri is not None:
            return self.mongo_uri.get_secret_value()
        if self.is_dev:
            return LOCAL_MONGO_URI
        raise ConfigError("FANOUT_MONGO_URI (or FANOUT_MONGO_SECRET_ARN) is required outside FANOUT_ENV=dev")

    def jwt_key(self) -> str:
        """The HS256 key for connect tokens: configured (or loaded by ``fanout.secrets``), else the
        development key, which only ``FANOUT_ENV=dev`` may use."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        if self.is_dev:
            return DEV_JWT_SECRET
        raise ConfigError("FANOUT_JWT_SECRET (or FANOUT_JWT_SECRET_ARN) is required outside FANOUT_ENV=dev")

    def aws_client_kwargs(self) -> dict[str, str]:
        """Keyword arguments for a boto3/aiobotocore client; dummy credentials against the local stack."""
        kwargs: dict[str, str] = {"region_name": self.region}
        endpoint = self.sqs_endpoint()
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if self.is_dev:
            kwargs |= {"aws_access_key_id": "fanout-local", "aws_secret_access_key": "fanout-local"}
        return kwargs
