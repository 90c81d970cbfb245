"""Settings: one object built from ``FANOUT_*`` environment variables, then passed down."""

from __future__ import annotations

import difflib
import logging
import os
import re
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from fanout.errors import ConfigError
from fanout.gateway.endpoints import checked_url

if TYPE_CHECKING:
    from botocore.config import Config

LOCAL_AWS_ENDPOINT = "http://127.0.0.1:9324"
LOCAL_MONGO_URI = "mongodb://127.0.0.1:27018"
DEV_JWT_SECRET = "fanout-dev-secret-not-for-production"  # noqa: S105 - a documented local default
_API_ID = re.compile(r"[a-z0-9]{1,64}")
#: A client action name: ``<domain>.<verb>[.<more>]``, lowercase, like an event type.
ACTION_PATTERN = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+")
#: Actions fanout itself answers: never forwarded, whatever FANOUT_FORWARD_ACTIONS says.
OWN_ACTIONS = frozenset(
    {
        *("ping", "hello", "subscribe", "unsubscribe", "notification.subscribe", "resume"),
        *("chat.typing", "chat.ack", "presence.query"),
    }
)

#: What each URL setting names, for its error; outside dev each must be https to a public host.
_URL_EXAMPLES = {
    "aws_endpoint_url": "https://sqs.{region}.amazonaws.com (or a VPC endpoint's name)",
    "management_endpoint": "https://{apiId}.execute-api.{region}.amazonaws.com/{stage}",
    # a query is allowed: some identity providers name the key set's policy in it
    "jwks_url": "https://login.example.com/.well-known/jwks.json",
}


class Settings(BaseSettings):
    """Every knob of fanout. Defaults target the local stack that ``fanout dev`` starts.

    With ``FANOUT_ENV=production`` no local default is assumed: the queue, MongoDB and (for the
    gateway) the JWT secret must be given explicitly.
    """

    model_config = SettingsConfigDict(env_prefix="FANOUT_", extra="ignore", frozen=True)

    env: Literal["dev", "production"] = "dev"

    # AWS (SQS / SNS)
    region: str = "us-east-1"
    aws_endpoint_url: str | None = Field(
        None, description="SQS/SNS endpoint; the local moto server in dev, https to a public host outside it"
    )
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
    flags_collection: str = Field("fanoutflags", description="run-time switches per domain or type")
    tickets_collection: str = Field("fanouttickets", description="connection tickets (hashes), TTL-indexed")
    mongo_timeout_ms: int = Field(5000, ge=1, description="deadline of every MongoDB call (0 would be none)")

    # API Gateway management API
    management_endpoint: str | None = Field(
        None, description="Override https://{domainName}/{stage} for every connection (e.g. a VPC endpoint)"
    )
    api_ids: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="API ids that posts may go to, comma-separated; empty: any in the region"
    )
    post_timeout_s: float = Field(5.0, gt=0)
    post_attempts: int = 4
    max_posts_in_flight: int = 256
    max_posts_per_s: float | None = Field(
        None, gt=0, description="Per-process post rate cap; adaptive on 429s"
    )

    # Worker
    receive_wait_s: int = Field(20, ge=0, le=20)
    visibility_timeout_s: int = Field(30, ge=1, le=43200)
    max_events_in_flight: int = Field(64, ge=1)
    pollers: int = Field(2, ge=1, description="0 would receive nothing, silently")
    shutdown_budget_s: float = 20.0
    stall_s: float = Field(
        60.0, gt=0, description="a worker loop silent this long is wedged: /healthz fails, a pool restarts it"
    )
    probe_s: float = Field(
        2.0, ge=0.1, le=30, description="readiness probe interval; each round is also the loop's heartbeat"
    )
    max_receives: int = Field(5, ge=2, description="the queue's redrive maxReceiveCount")
    shard_size: int = Field(2000, ge=10, description="connections per shard of a large audience")
    bulk_in_flight: int = Field(2, ge=1, description="shards one process delivers at once")
    outage_delay_s: int = Field(
        5, ge=0, le=900, description="while the management API refuses every connection: retry after this"
    )
    census_interval_s: float = Field(
        30, gt=0, description="how often one process samples active connections and TTL removals"
    )
    conflate_ms: int = Field(
        300, ge=0, le=10_000, description="hot counters: at most one post per key and window; 0: off"
    )
    metrics_host: str = "127.0.0.1"
    metrics_port: int = Field(9400, ge=1, le=65535)

    # Local gateway emulator and lifecycle handlers
    gateway_host: str = "127.0.0.1"
    gateway_port: int = Field(8080, ge=1, le=65535)
    gateway_stage: str = "local"
    demo_port: int = Field(
        8090, ge=1, le=65535, description="the demo page of `fanout dev`, on FANOUT_GATEWAY_HOST"
    )
    jwt_secret: SecretStr | None = None
    jwt_secret_arn: str | None = Field(
        None, description="Secrets Manager secret holding the connect-token key"
    )
    jwt_audience: str | None = None
    jwt_connect: bool = Field(True, description="accept JWTs at $connect; false: tickets only")
    jwks_url: str | None = Field(None, description="JWKS of the product's own tokens (RS256/ES256)")
    jwt_issuer: str | None = Field(
        None, description="required iss claim of JWKS tokens; required with FANOUT_JWKS_URL"
    )
    jwt_user_claim: str = Field("sub", min_length=1, description="claim of a JWKS token naming the user")
    jwks_cache_s: float = Field(300, gt=0, description="how long the fetched key set is used")
    jwks_refresh_s: float = Field(
        30, ge=0, description="least time between refreshes for an unknown kid, or after a failed fetch"
    )
    jwks_timeout_s: float = Field(3, gt=0, le=10, description="timeout of one JWKS fetch")
    jwks_stale_s: float = Field(
        3600,
        ge=0,
        le=86_400,
        description="how long past FANOUT_JWKS_CACHE_S the last key set serves while fetches fail; 0: never",
    )
    jwt_leeway_s: float = Field(
        30, ge=0, le=300, description="clock skew a token's exp, nbf and iat are allowed against ours"
    )
    ticket_ttl_s: int = Field(30, ge=1, le=60, description="lifetime of a connection ticket")
    inbound_queue_name: str = "fanout-inbound"
    inbound_queue_url: str | None = Field(None, description="queue of client actions for the domain")
    forward_actions: Annotated[frozenset[str], NoDecode] = Field(
        frozenset(), description="client actions forwarded beside chat.send and chat.read, comma-separated"
    )
    forward_max_bytes: int = Field(16 * 1024, ge=256, le=32 * 1024, description="largest forwarded frame")
    forward_rate: int = Field(20, ge=1, description="forwarded frames per connection per window")
    forward_window_s: int = Field(10, ge=1, le=3600, description="the rate window of forwarded frames")
    topic_policy: str | None = Field(
        None, description="package.module:function deciding gated topic kinds (organization, conversation)"
    )
    connection_ttl_s: int = Field(
        600,
        ge=180,  # a hidden browser tab's timers run once a minute: three of its pings, at least
        le=7200,
        description="a record's expiresAt: lastSeenAt plus this; silent this long, a connection gets no post",
    )
    max_connections_per_user: int = Field(
        50,
        ge=0,
        description="live connections one user may hold; a $connect past it is refused (429); 0: any",
    )

    # Ordering and catch-up after reconnect (docs/protocol.md, sections 20 and 21)
    sequences_collection: str = Field("fanoutsequences", description="per-key seq counters")
    history_collection: str = Field("fanouthistory", description="recent events kept for resume (TTL)")
    history_window_s: int = Field(
        900, ge=0, le=7 * 86400, description="how long events are kept; 0: not at all"
    )
    history_max_replay: int = Field(500, ge=1, le=5000, description="events one resume replays at most")

    # Typing indicators, presence and receipts (docs/protocol.md sections 16-18)
    participants_resolver: str | None = Field(
        None, description="package.module:function(conversation_id) -> the conversation's user ids"
    )
    conversations_collection: str = Field("conversations", description="the default participants' source")
    conversation_id_field: str = Field("_id", description="the conversation id's field (indexed) in it")
    participants_field: str = Field("participants", description="the user ids' field in a conversation")
    typing_timeout_s: int = Field(5, ge=1, le=60, description="silence after which typing stops by itself")
    typing_rate: int = Field(10, ge=1, description="chat.typing frames per connection per 10 s")
    ack_rate: int = Field(100, ge=1, description="chat.ack frames per connection per 10 s")
    presence: bool = Field(
        True, description="publish user.presence.updated on first connect, last disconnect"
    )
    presence_audience: str | None = Field(
        None, description="package.module:function(user_id) -> the user ids who may see that user's presence"
    )
    presence_grace_s: int = Field(
        5, ge=0, le=900, description="a user is offline once gone this long: quick reconnects do not flap"
    )

    # Background publishers (fanout.publish.BackgroundPublisher / AsyncBackgroundPublisher)
    publish_linger_ms: float = Field(5, ge=0, le=1000, description="wait for a batch to fill at most this")
    publish_buffer: int = Field(10_000, ge=10, description="events buffered at most, per publisher")
    publish_block_ms: float = Field(100, ge=0, description="a full buffer blocks this long, then raises")
    publish_flush_s: float = Field(10, gt=0, description="budget of the flush at close, exit and SIGTERM")

    # Transactional outbox relay (fanout relay, or FANOUT_RELAY=true in the worker)
    relay: bool = Field(False, description="run the outbox relay inside the worker (one process of the pool)")
    outbox_db: str | None = Field(None, description="database of the outbox; FANOUT_MONGO_DB when unset")
    outbox_collection: str = "fanout_outbox"
    relay_lease_s: float = Field(10, ge=1, le=300, description="lease lifetime; renewed every third of it")
    relay_poll_s: float = Field(1, gt=0, le=60, description="polling interval without change streams")
    outbox_retention_s: int = Field(7 * 86400, ge=60, description="relayed entries are kept this long")

    # Logs
    log_level: str = "INFO"
    log_format: Literal["console", "json"] | None = None
    log_summary_s: float = Field(60, gt=0, description="interval of the worker's events_summary line")

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
        if not self.is_dev and (named := _botocore_endpoints()):
            raise ValueError(
                f"FANOUT_ENV={self.env} refuses {', '.join(named)}: botocore would send its AWS calls there "
                "while the worker's own SQS client would not; name an endpoint with FANOUT_AWS_ENDPOINT_URL"
            )
        if self.probe_s >= self.stall_s:
            raise ValueError(
                "FANOUT_PROBE_S must be shorter than FANOUT_STALL_S: each probe round is the worker loop's "
                "heartbeat, and a loop silent for FANOUT_STALL_S is taken for wedged"
            )
        if self.jwks_url is not None and not self.jwt_issuer:
            raise ValueError("FANOUT_JWKS_URL needs FANOUT_JWT_ISSUER: a key set alone names no issuer")
        if self.is_dev and not self.aws_endpoint_url and (named := self._aws_queue_urls()):
            raise ValueError(
                f"{', '.join(named)} names a queue of AWS's own SQS, but FANOUT_ENV=dev sends every call to "
                f"the local stack ({LOCAL_AWS_ENDPOINT}) with dummy credentials: set FANOUT_ENV=production"
            )
        return self

    def _aws_queue_urls(self) -> list[str]:
        """The queue URL settings that name a host of AWS itself (``sqs.<region>.amazonaws.com``)."""
        urls = {
            "FANOUT_QUEUE_URL": self.queue_url,
            "FANOUT_BULK_QUEUE_URL": self.bulk_queue_url,
            "FANOUT_DLQ_URL": self.dlq_url,
            "FANOUT_INBOUND_QUEUE_URL": self.inbound_queue_url,
        }
        return [
            name
            for name, url in urls.items()
            if url and (urlsplit(url).hostname or "").endswith((".amazonaws.com", ".amazonaws.com.cn"))
        ]

    def require(self, needs: Iterable[Literal["queue", "mongo", "jwt"]]) -> None:
        """Fail once, naming every missing setting, when a command needs what production cannot default."""
        if self.is_dev:
            return
        missing = []
        if "queue" in needs and not self.queue_url:
            missing.append("FANOUT_QUEUE_URL")
        if "mongo" in needs and self.mongo_uri is None and not self.mongo_secret_arn:
            missing.append("FANOUT_MONGO_URI (or FANOUT_MONGO_SECRET_ARN)")
        keyed = self.jwt_secret or self.jwt_secret_arn or self.jwks_url
        if "jwt" in needs and self.jwt_connect and not keyed:
            missing.append("FANOUT_JWT_SECRET (or FANOUT_JWT_SECRET_ARN, or FANOUT_JWKS_URL)")
        if missing:
            raise ConfigError(f"FANOUT_ENV={self.env} needs {', '.join(missing)}")

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in logging.getLevelNamesMapping() or level == "NOTSET":
            raise ValueError("must be DEBUG, INFO, WARNING, ERROR or CRITICAL")
        return level

    @field_validator("aws_endpoint_url", "management_endpoint", "jwks_url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value:  # empty: unset, as its readers take it
            name = str(info.field_name)
            dev = info.data.get("env", "dev") == "dev"
            checked_url(value, dev=dev, example=_URL_EXAMPLES[name], query=name == "jwks_url")
        return value

    @field_validator("mongo_uri")
    @classmethod
    def _check_mongo_uri(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and info.data.get("env", "dev") != "dev":
            checked_mongo_uri(value.get_secret_value())
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

    @field_validator("forward_actions", mode="before")
    @classmethod
    def _split_actions(cls, value: Any) -> Any:
        if isinstance(value, str):
            value = [part.strip() for part in value.split(",") if part.strip()]
        for action in value:
            if not isinstance(action, str) or not ACTION_PATTERN.fullmatch(action) or len(action) > 128:
                raise ValueError(f"{action!r} is not an action name such as chat.send")
            if action in OWN_ACTIONS:
                raise ValueError(f"{action!r} is answered by fanout itself and cannot be forwarded")
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

    def hs256_key(self) -> str | None:
        """The HS256 key connects may be signed with, or None where only JWKS tokens (or tickets) are
        accepted: production without FANOUT_JWT_SECRET."""
        if self.jwt_secret is not None:
            return self.jwt_secret.get_secret_value()
        return DEV_JWT_SECRET if self.is_dev else None

    def aws_config(self, config: Config | None = None) -> Config | None:
        """The botocore config of every AWS client: ``config`` (a client's own timeouts, pool, retries),
        and outside dev ``ignore_configured_endpoint_urls``, so an ``endpoint_url`` or ``services`` section
        in ``~/.aws/config`` (``AWS_CONFIG_FILE``) cannot send production's calls elsewhere."""
        if self.is_dev:
            return config
        from botocore.config import Config  # here: most importers of Settings never build a client

        ignore = Config(ignore_configured_endpoint_urls=True)  # type: ignore[call-arg]  # botocore-stubs lack it
        return ignore if config is None else config.merge(ignore)

    def aws_client_kwargs(self, config: Config | None = None) -> dict[str, Any]:
        """Keyword arguments for a boto3/aiobotocore SQS or SNS client, with ``aws_config(config)``;
        dummy credentials against the local stack."""
        kwargs: dict[str, Any] = {"region_name": self.region}
        endpoint = self.sqs_endpoint()
        if endpoint:
            kwargs["endpoint_url"] = endpoint
        if self.is_dev:
            kwargs |= {"aws_access_key_id": "fanout-local", "aws_secret_access_key": "fanout-local"}
        if (merged := self.aws_config(config)) is not None:
            kwargs["config"] = merged
        return kwargs


def pin_aws_endpoints(settings: Settings) -> None:
    """In production, botocore ignores endpoint URLs from the AWS config file for every client of this
    process, also those its credential chain builds itself (an assumed role's STS client), which
    ``Settings.aws_config`` cannot reach. The entry points call it once, before any client exists."""
    if not settings.is_dev:
        os.environ["AWS_IGNORE_CONFIGURED_ENDPOINT_URLS"] = "true"


def pinned(session: Any, settings: Settings) -> Any:
    """``session`` (botocore's or aiobotocore's) with ``pin_aws_endpoints``'s rule for its clients alone:
    outside dev, each ignores endpoint URLs configured outside the settings, the credential chain's own
    included. For the publishers, which run in a domain service's process: no entry point of ours pins it,
    and the service's other clients are not ours to change."""
    if not settings.is_dev:
        session.set_config_variable("ignore_configured_endpoint_urls", True)
    return session


def boto3_session(settings: Settings) -> Any:
    """A boto3 session whose clients follow ``pinned``."""
    import boto3
    import botocore.session

    return boto3.Session(botocore_session=pinned(botocore.session.get_session(), settings))


def aio_session(settings: Settings) -> Any:
    """An aiobotocore session whose clients follow ``pinned``."""
    from aiobotocore.session import get_session

    return pinned(get_session(), settings)


def checked_mongo_uri(uri: str) -> None:
    """Outside dev, MongoDB is reached over TLS that checks the server's certificate: ``mongodb+srv://``
    (TLS unless turned off) or ``mongodb://`` with ``tls=true``, and none of ``tlsInsecure``,
    ``tlsAllowInvalidCertificates``, ``tlsAllowInvalidHostnames``. The local stack's plain
    ``mongodb://127.0.0.1`` cannot take effect in production. ``ValueError`` with the reason, never the URI,
    which may carry a password."""
    from pymongo.errors import PyMongoError  # here: most importers of Settings never reach MongoDB
    from pymongo.uri_parser import split_options

    srv = uri.startswith("mongodb+srv://")
    if not (srv or uri.startswith("mongodb://")):
        raise ValueError("must be a MongoDB URI such as mongodb+srv://user:password@cluster.example.net/")
    # Where the options start, as pymongo reads a URI: at its first "?", wherever that is. Read after the
    # first "/" instead, mongodb+srv://host?tls=false&appName=/x passed as TLS while pymongo turned it off.
    query = uri.partition("://")[2].partition("?")[2]
    try:
        with warnings.catch_warnings():  # a repeated option: pymongo warns when the client reads it too
            warnings.simplefilter("ignore")
            options = split_options(query) if query else {}
    except OSError:  # pymongo opens the files an option names (tlsCAFile, tlsCertificateKeyFile)
        raise ValueError("names a TLS file that cannot be read") from None
    except (PyMongoError, ValueError):
        raise ValueError("has options pymongo cannot read") from None
    if not options.get("tls", srv):
        raise ValueError("must use TLS when FANOUT_ENV=production (mongodb+srv://, or tls=true)")
    for name in ("tlsInsecure", "tlsAllowInvalidCertificates", "tlsAllowInvalidHostnames"):
        if options.get(name):
            raise ValueError(f"must check the server's certificate when FANOUT_ENV=production ({name})")


def _botocore_endpoints() -> list[str]:
    """The variables botocore reads an endpoint from (``AWS_ENDPOINT_URL``, ``AWS_ENDPOINT_URL_SQS``...):
    LocalStack's and moto's way to redirect a client, which production never takes."""
    return sorted(k for k in os.environ if k == "AWS_ENDPOINT_URL" or k.startswith("AWS_ENDPOINT_URL_"))


#: ``FANOUT_*`` variables that are not settings, and their prefixes: read by the bench (bench/profile.py),
#: the CDK app (deploy/fanout_cdk/bundling.py), the tests and the TypeScript package's tests. Every other
#: ``FANOUT_*`` name is reported by ``warn_unknown`` (tests/unit/test_config.py keeps this list complete).
NOT_SETTINGS = frozenset(
    {"FANOUT_CALLS_OUT", "FANOUT_DRIVER", "FANOUT_LAMBDA_BUNDLE_CACHE", "FANOUT_UPDATE_DEMO_PNG"}
)
NOT_SETTINGS_PREFIXES = ("FANOUT_TS_",)


def _probable_setting(name: str) -> str | None:
    """The setting a ``FANOUT_*`` name that is none probably means: the closest (difflib), else the longest
    setting it starts with (``FANOUT_ENVIRONMENT``: ``env``)."""
    fields = list(Settings.model_fields)
    close = difflib.get_close_matches(name, fields, n=1)
    if close:
        return close[0]
    return max((f for f in fields if name.startswith(f)), key=len, default=None)


def unknown_variables(environ: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each ``FANOUT_*`` variable of ``environ`` (the process's) that no setting reads and ``NOT_SETTINGS``
    does not name, with the ``FANOUT_*`` setting it probably means (or None). Names only: never a value.
    Case-insensitive, as pydantic-settings reads them."""
    environ = os.environ if environ is None else environ
    found: dict[str, str | None] = {}
    for name in sorted(environ):
        upper = name.upper()
        if (
            not upper.startswith("FANOUT_")
            or upper in NOT_SETTINGS
            or upper.startswith(NOT_SETTINGS_PREFIXES)
        ):
            continue
        setting = upper.removeprefix("FANOUT_").lower()
        if setting not in Settings.model_fields:
            probable = _probable_setting(setting)
            found[name] = f"FANOUT_{probable.upper()}" if probable else None
    return found


def warn_unknown(environ: Mapping[str, str] | None = None) -> None:
    """One warning line naming every unknown ``FANOUT_*`` variable (``unknown_variables``), each with the
    setting it probably means; nothing when there is none. Each entry point calls it once its logs are
    configured: a misspelled setting is otherwise ignored without a word."""
    unknown = unknown_variables(environ)
    if unknown:
        from fanout.logging import get_logger  # here: config is imported before logging is configured

        get_logger("fanout.config").warning(
            "unknown_variables",
            variables=[
                f"{name} (did you mean {probable}?)" if probable else name
                for name, probable in unknown.items()
            ],
            note="not settings, ignored (docs/configuration.md)",
        )


def _refuse_a_misspelled_env(environ: Mapping[str, str]) -> None:
    """Without ``FANOUT_ENV`` a process runs as ``dev``: with a variable that probably means it and holds
    a mode (``FANOUT_EVN=production``), which mode was meant is unknown, so nothing runs. A name merely
    close to it that holds no mode is only warned about."""
    if any(name.upper() == "FANOUT_ENV" for name in environ):
        return
    for name, probable in unknown_variables(environ).items():
        if probable == "FANOUT_ENV" and environ[name].strip().lower() in ("dev", "production"):
            raise ConfigError(
                f"{name} is not a setting (FANOUT_ENV?), and without FANOUT_ENV this would run as dev: "
                "set FANOUT_ENV=dev or FANOUT_ENV=production"
            )


def load(**values: Any) -> Settings:
    """Settings from ``FANOUT_*`` (and ``values``); ``ConfigError`` with every reason, never a value, and
    when ``FANOUT_ENV`` is missing but a misspelling of it is set (``_refuse_a_misspelled_env``)."""
    if "env" not in values:
        _refuse_a_misspelled_env(os.environ)
    try:
        return Settings(**values)
    except ValidationError as exc:
        raise ConfigError(describe(exc)) from None


def describe(exc: ValidationError) -> str:
    """The reasons of a settings error, each naming its variable, without the values: pydantic's own text
    quotes the input (every setting, for a rule over several), and a value may be a key or a password."""
    reasons = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        reason = str(error["msg"]).removeprefix("Value error, ")
        loc = error["loc"]
        reasons.append(f"bad setting FANOUT_{str(loc[0]).upper()}: {reason}" if loc else reason)
    return "; ".join(reasons)
