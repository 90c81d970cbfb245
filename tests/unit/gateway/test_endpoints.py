"""Connection records choose where posts go: only execute-api hosts of the region (or the configured
endpoint) in production, local names over plain HTTP in dev too, narrowed by an allowlist of API ids."""

from __future__ import annotations

import asyncio
import socket
from datetime import UTC, datetime

import pytest
from pydantic import ValidationError
from structlog.testing import capture_logs

from fanout.config import Settings
from fanout.gateway.client import MAX_ENDPOINTS, ManagementClient, Outcome
from fanout.gateway.endpoints import EndpointPolicy, EndpointRefused
from fanout.gateway.http import HttpClient
from fanout.store import Connection

API = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
OTHER_API = "z9y8x7w6v5.execute-api.us-east-1.amazonaws.com"
DEV, PROD = True, False

# (dev, domainName, stage) -> (scheme, host, port, Host header, path prefix)
ALLOWED = [
    (PROD, API, "prod", ("https", API, None, API, "/prod")),
    (PROD, API.upper(), "prod", ("https", API, None, API, "/prod")),
    (PROD, OTHER_API, "v2_beta-1", ("https", OTHER_API, None, OTHER_API, "/v2_beta-1")),
    (DEV, API, "prod", ("https", API, None, API, "/prod")),
    (DEV, "127.0.0.1:8080", "local", ("http", "127.0.0.1", 8080, "127.0.0.1:8080", "/local")),
    (DEV, "localhost:8080", "local", ("http", "localhost", 8080, "localhost:8080", "/local")),
    (DEV, "app.localhost", "local", ("http", "app.localhost", None, "app.localhost", "/local")),
    (DEV, "10.0.3.7:9000", "local", ("http", "10.0.3.7", 9000, "10.0.3.7:9000", "/local")),
    (DEV, "192.168.1.20", "local", ("http", "192.168.1.20", None, "192.168.1.20", "/local")),
    (DEV, "gateway:8080", "local", ("http", "gateway", 8080, "gateway:8080", "/local")),
    (DEV, "api.internal", "local", ("http", "api.internal", None, "api.internal", "/local")),
]

REFUSED = [
    # production: only execute-api hosts of the configured region, with no port
    (PROD, "127.0.0.1:8080", "local"),
    (PROD, "localhost:8080", "local"),
    (PROD, "10.0.3.7", "local"),
    (PROD, "169.254.169.254", "latest"),
    (PROD, "metadata.google.internal", "local"),
    (PROD, "gateway:8080", "local"),
    (PROD, "example.com", "prod"),
    (PROD, "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", "prod"),
    (PROD, f"{API}.evil.example", "prod"),
    (PROD, f"evil.example/{API}", "prod"),
    (PROD, f"x.{API}", "prod"),
    (PROD, f"{API}.", "prod"),
    (PROD, f"{API}:8443", "prod"),
    (PROD, "a1b2-c3d4.execute-api.us-east-1.amazonaws.com", "prod"),
    (PROD, "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com.cn", "prod"),
    # bad names and stages, in either environment
    (PROD, API, "prod\r\nX-Injected: 1"),
    (PROD, API, "../x"),
    (PROD, API, ""),
    (DEV, "evil.example\r\nX-Injected: 1", "prod"),
    (DEV, "api.example.com/../x", "prod"),
    (DEV, "127.0.0.1", "prod\r\n"),
    (DEV, "[::1]:8080", "local"),
    (DEV, "127.0.0.1:0", "local"),
    (DEV, "127.0.0.1:70000", "local"),
    (DEV, "-bad-.internal", "local"),
    (DEV, "", "local"),
    # dev allows local names, not any public host
    (DEV, "example.com", "prod"),
    (DEV, "8.8.8.8:80", "prod"),
    (DEV, "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com", "prod"),
]


@pytest.mark.parametrize(("dev", "domain", "stage", "expected"), ALLOWED)
def test_allowed_records_resolve_to_their_endpoint(
    dev: bool, domain: str, stage: str, expected: tuple[str, str, int | None, str, str]
) -> None:
    """An execute-api host of the region is posted to over https; in dev a local name over plain http."""
    endpoint = EndpointPolicy(region="us-east-1", dev=dev).resolve(domain, stage)
    assert expected == (endpoint.scheme, endpoint.host, endpoint.port, endpoint.netloc, endpoint.prefix)


@pytest.mark.parametrize(("dev", "domain", "stage"), REFUSED)
def test_other_records_are_refused(dev: bool, domain: str, stage: str) -> None:
    """Any other host, port, region or stage name is refused with a reason."""
    with pytest.raises(EndpointRefused) as refused:
        EndpointPolicy(region="us-east-1", dev=dev).resolve(domain, stage)
    assert refused.value.reason


@pytest.mark.parametrize("dev", [DEV, PROD])
def test_an_allowlist_of_api_ids_narrows_the_region(dev: bool) -> None:
    """With FANOUT_API_IDS set, only those APIs of the region are posted to."""
    policy = EndpointPolicy(region="us-east-1", dev=dev, api_ids={"a1b2c3d4e5"})
    assert API == policy.resolve(API, "prod").host
    with pytest.raises(EndpointRefused, match="FANOUT_API_IDS"):
        policy.resolve(OTHER_API, "prod")


def test_the_region_chooses_the_hosts_and_china_regions_their_suffix() -> None:
    """The configured region decides which execute-api hosts are allowed, amazonaws.com.cn in China."""
    china = "a1b2c3d4e5.execute-api.cn-north-1.amazonaws.com.cn"
    assert china == EndpointPolicy(region="cn-north-1", dev=False).resolve(china, "prod").host
    with pytest.raises(EndpointRefused):
        EndpointPolicy(region="eu-west-1", dev=False).resolve(API, "prod")


@pytest.mark.parametrize(
    ("dev", "override", "expected"),
    [
        (PROD, f"https://{API}/prod/", ("https", API, None, API, "/prod")),
        (PROD, "https://vpce-1.execute-api.us-east-1.vpce.amazonaws.com:443/prod", None),
        (DEV, "http://127.0.0.1:8080/local", ("http", "127.0.0.1", 8080, "127.0.0.1:8080", "/local")),
    ],
)
def test_a_configured_endpoint_serves_every_record(
    dev: bool, override: str, expected: tuple[str, str, int | None, str, str] | None
) -> None:
    """The configured management endpoint receives every record's posts, whatever the record names."""
    policy = EndpointPolicy(region="us-east-1", dev=dev, override=override)
    endpoints = {
        policy.resolve(domain, stage) for domain, stage in [(API, "x"), ("localhost", "y"), ("", "")]
    }
    assert 1 == len(endpoints)
    endpoint = endpoints.pop()
    if expected is not None:
        assert expected == (endpoint.scheme, endpoint.host, endpoint.port, endpoint.netloc, endpoint.prefix)
    assert override.rstrip("/").endswith(endpoint.prefix)


@pytest.mark.parametrize(
    ("dev", "override"),
    [
        (PROD, f"http://{API}/prod"),
        (PROD, "ftp://example.com/prod"),
        (PROD, "https://localhost:8443/local"),
        (PROD, "https://127.0.0.1:8080/local"),
        (PROD, "https://10.0.3.7/prod"),
        (PROD, "https://169.254.169.254/latest"),
        (PROD, "https://gateway:8080/local"),
        (PROD, "https://api.internal/prod"),
        (PROD, "https://localhost./local"),
        (PROD, "https://127.1:8080/local"),
        (PROD, "https://0x7f.1/local"),
        (PROD, "https://10.1/prod"),
        (PROD, "https://2130706433/local"),
        (PROD, "https://[::ffff:127.0.0.1]/local"),
        (PROD, "https://100.64.0.1/local"),
        (DEV, "127.0.0.1:8080/local"),
        (DEV, "http://user:secret@127.0.0.1:8080/local"),
        (DEV, "http://127.0.0.1:8080/local?x=1"),
        (DEV, "http://127.0.0.1:99999/local"),
    ],
)
def test_a_configured_endpoint_that_cannot_be_one_is_a_config_error(dev: bool, override: str) -> None:
    """Plain http or a local name (loopback, private address, single label, also spelled with a final dot
    or as the resolver's short IPv4 forms) outside dev, another scheme, credentials, a query or a bad
    port: refused at start."""
    with pytest.raises(ValueError, match=r"must|port"):
        EndpointPolicy(region="us-east-1", dev=dev, override=override)
    env = "dev" if dev else "production"
    with pytest.raises(ValidationError, match="management_endpoint"):
        Settings(env=env, management_endpoint=override)


#: Local addresses spelled in characters the resolver maps to ASCII (IDNA: fullwidth digits, a soft hyphen,
#: which maps to nothing), each with the address it reads.
LOCAL_SPELLINGS = [
    ("\uff11\uff12\uff17.0.0.1", "127.0.0.1"),
    ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "127.0.0.1"),
    ("127.0.0.\u00ad1", "127.0.0.1"),
    ("\uff11\uff16\uff19.254.169.254", "169.254.169.254"),
]


@pytest.mark.parametrize(("spelled", "address"), LOCAL_SPELLINGS)
def test_a_local_address_spelled_in_other_characters_is_refused_in_production(
    spelled: str, address: str
) -> None:
    """A host the resolver reads as a loopback or link-local address (a connection to it reaches this
    machine) is refused by every URL setting in production, however its characters spell it; dev takes it."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert address == socket.getaddrinfo(spelled, port, type=socket.SOCK_STREAM)[0][4][0]
        if address == "127.0.0.1":
            socket.create_connection((spelled, port), timeout=2).close()  # reaches the local server
    for fields in (
        {"management_endpoint": f"https://{spelled}/prod"},
        {"aws_endpoint_url": f"https://{spelled}"},
        {"jwks_url": f"https://{spelled}/jwks.json", "jwt_issuer": "i"},
    ):
        with pytest.raises(ValidationError, match="must name a public host"):
            Settings(env="production", **fields)
        assert Settings(**fields).env == "dev"


def test_api_ids_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    """FANOUT_API_IDS is a comma-separated list; blanks are dropped, case folded, empty means any."""
    assert frozenset() == Settings().api_ids
    monkeypatch.setenv("FANOUT_API_IDS", " a1b2c3d4e5, Z9Y8X7W6V5 ,,")
    assert {"a1b2c3d4e5", "z9y8x7w6v5"} == Settings().api_ids
    monkeypatch.setenv("FANOUT_API_IDS", "a1b2c3d4e5,not an id")
    with pytest.raises(ValidationError, match="not an API Gateway API id"):
        Settings()


def test_a_production_endpoint_setting_must_be_https() -> None:
    """FANOUT_MANAGEMENT_ENDPOINT is https in production; plain http only in dev."""
    https = f"https://{API}/prod"
    assert https == Settings(env="production", management_endpoint=https).management_endpoint
    assert (
        "http://127.0.0.1:8080/local"
        == Settings(management_endpoint="http://127.0.0.1:8080/local").management_endpoint
    )
    with pytest.raises(ValidationError, match="must be https"):
        Settings(env="production", management_endpoint="http://127.0.0.1:8080/local")


def connection(domain: str, connection_id: str = "abcDEF123=", stage: str = "local") -> Connection:
    return Connection(connection_id, "u1", domain, stage, datetime.now(UTC))


async def test_a_production_client_makes_no_request_to_a_local_host() -> None:
    """A production client refuses a record naming a live local server: the server sees no connection."""
    accepted: list[object] = []

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        writer.close()

    server = await asyncio.start_server(accept, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    http = HttpClient(timeout_s=2)
    client = ManagementClient(http, None, region="us-east-1")
    async with server:
        for domain in (f"127.0.0.1:{port}", f"localhost:{port}"):
            assert Outcome.REJECTED is await client.post(connection(domain), b"{}")
            assert (Outcome.REJECTED, None) == await client.get(connection(domain))
            assert Outcome.REJECTED is await client.delete(connection(domain))
        await asyncio.sleep(0.1)
        dev = ManagementClient(http, None, region="us-east-1", dev=True)
        assert Outcome.UNREACHABLE is await dev.post(
            connection(f"127.0.0.1:{port}"), b"{}"
        )  # dev: it is reached
        await http.close()
    assert 1 == len(accepted)


async def test_a_refused_endpoint_is_logged_once_without_connection_ids() -> None:
    """Many posts to one refused endpoint log one warning, naming the endpoint and no connection id."""
    http = HttpClient(timeout_s=2)
    client = ManagementClient(http, None, region="us-east-1")
    ids = [f"conn-{i}-secretid=" for i in range(5)]
    with capture_logs() as logs:
        for cid in ids:
            assert Outcome.REJECTED is await client.post(connection("evil.example", cid, "prod"), b"{}")
        assert Outcome.REJECTED is await client.post(connection("other.example", ids[0], "prod"), b"{}")
    await http.close()
    assert ["evil.example/prod", "other.example/prod"] == [line["endpoint"] for line in logs]
    assert all(line["log_level"] == "warning" and line["reason"] for line in logs)
    assert not any(cid in repr(logs) for cid in ids)
    assert {} == http._origins


async def test_the_cache_of_endpoints_is_bounded() -> None:
    """Records naming endless distinct endpoints neither grow the cache nor the log past a bound."""
    http = HttpClient(timeout_s=2)
    client = ManagementClient(http, None, region="us-east-1")
    with capture_logs() as logs:
        for i in range(MAX_ENDPOINTS + 50):
            assert Outcome.REJECTED is await client.post(connection(f"host{i}.example"), b"{}")
    await http.close()
    assert MAX_ENDPOINTS == len(logs) == len(client._bases)


async def test_an_unprintable_endpoint_is_logged_printable() -> None:
    """A refused endpoint with control characters is logged with them replaced and its length bounded."""
    http = HttpClient(timeout_s=2)
    client = ManagementClient(http, None, region="us-east-1")
    with capture_logs() as logs:
        await client.post(connection("evil\r\nforged: line" + "x" * 1000), b"{}")
    await http.close()
    assert "evil??forged:?line" == logs[0]["endpoint"][:18]
    assert len(logs[0]["endpoint"]) <= 300
