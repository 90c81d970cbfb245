"""Settings: checked once, with the same rules wherever they are built."""

from __future__ import annotations

import re
from pathlib import Path

import boto3
import pytest
from pydantic import ValidationError

from fanout import config, queues, secrets
from fanout.config import DEV_JWT_SECRET, Settings, load
from fanout.errors import ConfigError
from fanout.publish import AsyncBackgroundPublisher, AsyncPublisher, Publisher, background
from tests.conftest import Server


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
        ({"probe_s": 0}, "greater than or equal to 0.1"),
        ({"probe_s": 31}, "less than or equal to 30"),
        ({"probe_s": 5, "stall_s": 5}, "FANOUT_PROBE_S must be shorter than FANOUT_STALL_S"),
        # each of these made a worker that receives nothing, hangs, times out every post or calls MongoDB
        # without a deadline, or crashes with a traceback once it binds or connects
        ({"pollers": 0}, "greater than or equal to 1"),
        ({"max_events_in_flight": 0}, "greater than or equal to 1"),
        ({"post_timeout_s": 0}, "greater than 0"),
        ({"mongo_timeout_ms": 0}, "greater than or equal to 1"),
        ({"mongo_timeout_ms": -5}, "greater than or equal to 1"),
        ({"metrics_port": 99999}, "less than or equal to 65535"),
        ({"gateway_port": 0}, "greater than or equal to 1"),
        ({"connection_ttl_s": 120}, "greater than or equal to 180"),  # a hidden tab pings once a minute
    ],
)
def test_bad_values_are_refused_when_built(fields: dict[str, object], message: str) -> None:
    """A short or development key in production, an out-of-range value, or a probe round no shorter than
    a stall fails at construction."""
    with pytest.raises(ValidationError, match=message):
        Settings(**fields)  # type: ignore[arg-type]


AWS_QUEUE = "https://sqs.us-east-1.amazonaws.com/111122223333/fanout-events"


@pytest.mark.parametrize("field", ["queue_url", "bulk_queue_url", "dlq_url", "inbound_queue_url"])
def test_dev_refuses_a_queue_of_aws_itself(field: str) -> None:
    """FANOUT_ENV left at dev (a domain service that forgot it) with a queue URL of AWS's own SQS would
    send to the local stack with dummy credentials, each publish failing: refused at construction, naming
    the setting; an explicit endpoint, or production, takes it."""
    with pytest.raises(ValidationError, match=f"FANOUT_{field.upper()} names a queue of AWS's own SQS"):
        Settings(**{field: AWS_QUEUE})  # type: ignore[arg-type]
    Settings(**{field: AWS_QUEUE, "aws_endpoint_url": "https://sqs.us-east-1.amazonaws.com"})  # type: ignore[arg-type]
    Settings(**{field: AWS_QUEUE, "env": "production"})  # type: ignore[arg-type]
    Settings(**{field: "http://127.0.0.1:9324/000000000000/fanout-events"})  # type: ignore[arg-type]


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


PRODUCTION_AWS_ENDPOINTS = [
    "https://sqs.us-east-1.amazonaws.com",
    "https://sqs.us-east-1.amazonaws.com/",
    "https://vpce-0a1b2c3d4e5f67890-abcdefgh.sqs.us-east-1.vpce.amazonaws.com",
    "https://sqs.cn-north-1.amazonaws.com.cn:443",
]


@pytest.mark.parametrize("url", PRODUCTION_AWS_ENDPOINTS)
def test_production_takes_an_https_aws_endpoint(url: str) -> None:
    """A regional SQS endpoint or an SQS VPC endpoint is an override production may use."""
    s = Settings(env="production", aws_endpoint_url=url)
    assert (url, url) == (s.sqs_endpoint(), s.aws_client_kwargs()["endpoint_url"])


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://127.0.0.1:9324", "must be https"),
        ("http://sqs.us-east-1.amazonaws.com", "must be https"),
        ("https://127.0.0.1:9324", "public host"),
        ("https://localhost:4566", "public host"),
        ("https://localhost.:4566", "public host"),
        ("https://127.1:9324", "public host"),
        ("https://[::1]:9324", "public host"),
        ("https://10.0.3.7", "public host"),
        ("https://169.254.169.254", "public host"),
        ("https://100.101.102.103", "public host"),  # shared address space (RFC 6598), e.g. Tailscale's
        ("https://moto:5000", "public host"),
        ("https://localstack.internal:4566", "public host"),
        ("https://localhost.localstack.cloud:4566", "public host"),  # public DNS, answered with 127.0.0.1
        ("https://sqs.us-east-1.localhost.localstack.cloud:4566", "public host"),
        ("https://moto.local:5000", "public host"),
        ("https://user:pass@sqs.us-east-1.amazonaws.com", "no credentials"),
        ("https://sqs.us-east-1.amazonaws.com/?a=1", "no query"),
        ("sqs.us-east-1.amazonaws.com", "must be a URL such as https://sqs"),
    ],
)
def test_production_refuses_a_local_or_plain_http_aws_endpoint(url: str, reason: str) -> None:
    """FANOUT_AWS_ENDPOINT_URL in production is https to a public host: the local stack's endpoint (plain
    HTTP, loopback, a private address, a single-label or .internal name) is refused at start."""
    with pytest.raises(ValidationError, match=reason):
        Settings(env="production", aws_endpoint_url=url)


@pytest.mark.parametrize(
    "variable", ["AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_SQS", "AWS_ENDPOINT_URL_SECRETS_MANAGER"]
)
def test_production_refuses_botocores_own_endpoint_variables(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    """botocore's own endpoint variables would send the AWS clients (not the worker's SQS client) to a
    local stack: production refuses them by name, without their value; dev keeps working with them."""
    monkeypatch.setenv(variable, "http://127.0.0.1:4566/tail-of-a-value")
    with pytest.raises(ConfigError, match=variable) as refused:
        load(env="production")
    assert "tail-of-a-value" not in str(refused.value)
    assert load(env="dev").is_dev


def test_dev_takes_the_local_stack_endpoints() -> None:
    """In dev the moto server is reached over plain HTTP on a local name; an empty value is unset."""
    for url in ("http://127.0.0.1:9324", "http://localstack:4566", "http://localhost:4566"):
        assert url == Settings(aws_endpoint_url=url).sqs_endpoint()
    assert "http://127.0.0.1:9324" == Settings(aws_endpoint_url="").sqs_endpoint()
    assert Settings(env="production", aws_endpoint_url="").sqs_endpoint() is None


@pytest.mark.parametrize(
    "url",
    [
        "https://localhost/jwks.json",
        "https://localhost:8443/.well-known/jwks.json",
        "https://127.0.0.1:8443/jwks.json",
        "https://[::1]/jwks.json",
        "https://192.168.1.20/jwks.json",
        "https://login/jwks.json",
        "https://login.internal/jwks.json",
        "ftp://login.example.test/jwks.json",
        "https://user:pass@login.example.test/jwks.json",
    ],
)
def test_production_refuses_a_local_jwks(url: str) -> None:
    """FANOUT_JWKS_URL in production is https to a public host: a key set served by this machine or a
    private network (loopback, private address, single label) is refused at start, even over https."""
    with pytest.raises(ValidationError, match="jwks_url"):
        Settings(env="production", jwks_url=url, jwt_issuer="i")


def test_a_public_jwks_keeps_its_query_and_dev_keeps_a_local_one() -> None:
    """A public identity provider's key set (with a policy query, as some name it) is taken in production;
    a local key set over plain HTTP in dev only."""
    public = "https://tenant.b2clogin.example.test/tenant/discovery/v2.0/keys?p=b2c_1_signin"
    assert public == Settings(env="production", jwks_url=public, jwt_issuer="i").jwks_url
    local = "http://127.0.0.1:8443/.well-known/jwks.json"
    assert local == Settings(jwks_url=local, jwt_issuer="i").jwks_url


@pytest.mark.parametrize(
    ("fields", "variable"),
    [
        ({"aws_endpoint_url": "http://fanout-local:tail-of-a-key@127.0.0.1:9324"}, "FANOUT_AWS_ENDPOINT_URL"),
        ({"aws_endpoint_url": "https://127.0.0.1:9324/tail-of-a-path"}, "FANOUT_AWS_ENDPOINT_URL"),
        ({"jwks_url": "https://127.0.0.1/jwks?key=tail-of-a-key", "jwt_issuer": "i"}, "FANOUT_JWKS_URL"),
    ],
)
def test_a_refused_endpoint_names_its_variable_and_reason_not_its_value(
    fields: dict[str, str], variable: str
) -> None:
    """The settings error names the variable and why it is refused, never the URL, which may hold a key."""
    with pytest.raises(ConfigError) as caught:
        load(env="production", **fields)
    message = str(caught.value)
    assert message.startswith(f"bad setting {variable}: must")
    assert "tail-of-a" not in message and "127.0.0.1" not in message


@pytest.mark.parametrize(
    "uri",
    [
        "mongodb+srv://fanout:tail-of-a-password@cluster0.example.net/?retryWrites=true&w=majority",
        "mongodb://docdb-1.cluster-abc.eu-west-1.docdb.amazonaws.com:27017/fanout?tls=true&replicaSet=rs0",
        "mongodb://mongo-a.internal:27017,mongo-b.internal:27017/?ssl=true&replicaSet=rs0",
        "mongodb://mongo.internal/?tls=true&tlsInsecure=false",
    ],
)
def test_production_takes_a_mongodb_over_tls(uri: str) -> None:
    """Atlas (``mongodb+srv://``: TLS unless turned off), DocumentDB and a replica set with ``tls=true``
    (or its older name ``ssl``) are taken in production, private hosts included."""
    assert uri == Settings(env="production", mongo_uri=uri).mongo()


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("mongodb://127.0.0.1:27018", "must use TLS"),  # the local stack's
        ("mongodb://fanout:tail-of-a-password@mongo.internal:27017/fanout", "must use TLS"),
        ("mongodb+srv://cluster0.example.net/?tls=false", "must use TLS"),
        (
            "mongodb://mongo.internal/?tls=true&tls=false",
            "must use TLS",
        ),  # the last one counts, as in pymongo
        ("mongodb://mongo.internal/?tls=true&tlsInsecure=true", "check the server's certificate"),
        (
            "mongodb+srv://cluster0.example.net/?tlsAllowInvalidCertificates=true",
            "check the server's certificate",
        ),
        (
            "mongodb://mongo.internal/?TLS=true;tlsallowinvalidhostnames=true",
            "check the server's certificate",
        ),
        ("mongodb://mongo.internal/?tls=true&tlsCAFile=/nonexistent/ca.pem", "TLS file that cannot be read"),
        ("mongodb://mongo.internal/?tls=maybe", "options pymongo cannot read"),
        # options before the first "/": pymongo reads them from the first "?", so must the check
        ("mongodb+srv://cluster0.example.net?tls=false&appName=/fanout", "must use TLS"),
        ("mongodb://mongo.internal?tlsInsecure=true&x/?appName=a&tls=true", "options pymongo cannot read"),
        ("https://tail-of-a-password@mongo.internal/", "must be a MongoDB URI"),
    ],
)
def test_production_refuses_a_mongodb_without_checked_tls(uri: str, reason: str) -> None:
    """Outside dev MongoDB is reached over TLS that checks the server's certificate, so the local stack's
    plain URI cannot take effect there. The error names the variable and the reason, never the URI."""
    with pytest.raises(ConfigError, match=f"bad setting FANOUT_MONGO_URI: .*{reason}") as caught:
        load(env="production", mongo_uri=uri)
    assert "tail-of-a" not in str(caught.value) and "mongo.internal" not in str(caught.value)
    assert uri == Settings(mongo_uri=uri).mongo()  # dev takes any of them


#: Two ways an AWS config file redirects every client: a profile's endpoint_url, or a services section.
CONFIG_FILE_ENDPOINTS = [
    "[default]\nendpoint_url = {url}\n",
    "[default]\nservices = local\n\n[services local]\nsqs =\n  endpoint_url = {url}\n"
    "secretsmanager =\n  endpoint_url = {url}\n",
]


@pytest.mark.parametrize("text", CONFIG_FILE_ENDPOINTS, ids=["endpoint_url", "services"])
async def test_production_clients_ignore_endpoints_from_the_aws_config_file(
    moto_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, text: str
) -> None:
    """An endpoint in AWS_CONFIG_FILE (here the moto server) redirects a plain boto3 client, but not
    production's boto3 and aiobotocore clients, which go to AWS's regional endpoints (inspected, never
    called), keeping their own config; dev's clients go to FANOUT_AWS_ENDPOINT_URL as before."""
    path = tmp_path / "config"
    path.write_text(text.format(url=moto_server.url))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)  # a session made earlier read /dev/null
    settings = Settings(env="production", region="eu-west-1")
    regional = "https://sqs.eu-west-1.amazonaws.com"
    plain = boto3.client("sqs", region_name="eu-west-1")
    batch = background.sqs_client(settings)
    secrets_client = secrets.client(settings)
    lazy = queues.LazyQueue(settings, f"{regional}/123456789012/q", "q")
    dev = boto3.client("sqs", **Settings(aws_endpoint_url="http://127.0.0.1:9").aws_client_kwargs())
    try:
        aio = await lazy.client()  # a known URL: opened, nothing sent
        assert moto_server.url == plain.meta.endpoint_url  # the file does redirect a client
        assert (regional, regional, 2) == (
            aio.meta.endpoint_url,
            batch.meta.endpoint_url,
            batch.meta.config.connect_timeout,
        )
        assert "https://secretsmanager.eu-west-1.amazonaws.com" == secrets_client.meta.endpoint_url
        assert "http://127.0.0.1:9" == dev.meta.endpoint_url
    finally:
        for client in (plain, batch, secrets_client, dev):
            client.close()
        await lazy.aclose()


def test_production_credentials_ignore_an_sts_endpoint_from_the_aws_config_file(
    moto_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    """A profile that assumes a role, with a services section sending STS to a local server (here moto),
    does not make production's credential chain call that server (review12: botocore's AssumeRole
    provider builds its own STS client, without Settings.aws_config, so the file's endpoint is used).
    A dead HTTPS proxy keeps the fixed behaviour from reaching real AWS."""
    from fanout.worker.clients import credentials

    _assume_role_via(moto_server, tmp_path, monkeypatch, closed_port)
    settings = Settings(env="production", region="us-east-1")
    got = None
    with pytest.raises(Exception):  # noqa: B017, PT011 - any failure: it did not reach the local server
        got = credentials(settings).get_frozen_credentials()
    assert got is None


def _assume_role_via(server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dead: int) -> None:
    """A config file whose profile assumes a role, its STS calls sent to ``server``; no other credentials,
    and every HTTPS call through a proxy on the closed port ``dead`` (whatever proxy variables the machine
    had), so a chain that ignores the file fails rather than reach real AWS."""
    path = tmp_path / "config"
    path.write_text(
        "[default]\nrole_arn = arn:aws:iam::123456789012:role/fanout\nsource_profile = src\n"
        "services = local\n\n[profile src]\naws_access_key_id = src\naws_secret_access_key = src\n"
        f"services = local\n\n[services local]\nsts =\n  endpoint_url = {server.url}\n"
    )
    monkeypatch.setenv("AWS_CONFIG_FILE", str(path))
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    for name in ("https_proxy", "all_proxy", "ALL_PROXY", "no_proxy", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)  # Python prefers the lowercase one; NO_PROXY would skip it
    monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{dead}")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's legacy retries waited 10 s for the dead proxy


async def test_the_publishers_credentials_ignore_an_sts_endpoint_from_the_aws_config_file(
    moto_server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, closed_port: int
) -> None:
    """In a domain service's process no entry point of ours pins botocore's endpoints, and the service's
    own clients are left alone (a plain boto3 client's chain does ask the file's STS, here moto), but the
    publishers' clients, sync and async, never do in production."""
    _assume_role_via(moto_server, tmp_path, monkeypatch, closed_port)
    queue = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    settings = Settings(env="production", region="us-east-1", queue_url=queue)
    plain = boto3.Session().client("sqs", region_name="us-east-1")
    assert "ASIA" in plain._request_signer._credentials.get_frozen_credentials().access_key  # moto's STS
    plain.close()
    for client in (Publisher(settings)._client, background.sqs_client(settings)):
        with pytest.raises(Exception):  # noqa: B017, PT011 - any failure: it did not reach the local server
            client._request_signer._credentials.get_frozen_credentials()
        client.close()
    async with AsyncPublisher(settings) as one, AsyncBackgroundPublisher(settings) as batched:
        for aclient in (one._client, batched._client):
            with pytest.raises(Exception):  # noqa: B017, PT011
                await aclient._request_signer._credentials.get_frozen_credentials()


#: Where the repository's own FANOUT_* names are: every one is a setting or in config.NOT_SETTINGS.
_SOURCES = ("src", "tests", "bench", "deploy", "scripts", "docs", "examples", "clients/typescript", ".ci")
_SKIPPED = {"node_modules", "cdk.out", "__pycache__", "dist", "build"}
_VARIABLE = re.compile(r"\bFANOUT_[A-Z0-9_]*[A-Z0-9]\b(?!_)")
#: The misspellings the tests of the unknown-variable warning (and docs/configuration.md) set on purpose.
_MISSPELLED = {"FANOUT_DEMO_PROT", "FANOUT_ENVIRONMENT", "FANOUT_EVN", "FANOUT_JWT_AUDEINCE",
               "FANOUT_MAX_INFLIGHT", "FANOUT_MONGO_URL", "FANOUT_NOT_EVEN_CLOSE", "FANOUT_QUEUE_ULR"}  # fmt: skip


def test_every_fanout_variable_of_the_repository_is_a_setting_or_allowed() -> None:
    """A FANOUT_* name the repository uses (bench, tests, deploy, the TypeScript package) is either a
    setting or listed in NOT_SETTINGS, so no entry point warns about a variable of our own tools."""
    root = Path(__file__).resolve().parents[2]
    paths = [root / name for name in ("Makefile", "Dockerfile", "README.md", "pyproject.toml")]
    for top in _SOURCES:
        paths += [
            p
            for p in (root / top).rglob("*")
            if p.is_file() and not _SKIPPED & set(p.relative_to(root).parts) and p.suffix != ".png"
        ]
    names = {name for path in paths for name in _VARIABLE.findall(path.read_text(errors="replace"))}
    assert {"FANOUT_QUEUE_URL", "FANOUT_CALLS_OUT", "FANOUT_TS_QUEUE_URL"} <= names  # the scan reads them
    assert _MISSPELLED == set(config.unknown_variables(dict.fromkeys(names, "")))
