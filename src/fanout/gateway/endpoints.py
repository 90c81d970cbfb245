"""Where the management client may post: a connection record names its API, so that name is checked.

The worker posts each frame to the API that the connection record names (``https://{domainName}/{stage}``),
signed with the task role's credentials. A record naming any other host would send signed requests and
users' frames wherever it says, so a post goes only to:

- ``https://{apiId}.execute-api.{region}.amazonaws.com/{stage}`` in the worker's region, and only for
  the API ids of ``FANOUT_API_IDS`` when that is set;
- or the configured management endpoint (``FANOUT_MANAGEMENT_ENDPOINT``), which then serves every record
  and must be https to a public host name outside dev.

Plain HTTP and local names (``localhost``, ``*.localhost``, ``*.internal``, single-label names such as a
compose service, loopback, private and shared (100.64.0.0/10) addresses) are allowed in dev only, where
the local emulator runs, and are reached over plain HTTP. A name is judged as the resolver reads it
(IDNA), so fullwidth digits (U+FF11 for 1) or a soft hyphen cannot spell a local address past the check.
``ManagementClient`` asks once per (domainName, stage) and caches the answer, so a post pays nothing for
the check.

``checked_url`` is that rule for every URL a setting names (``FANOUT_MANAGEMENT_ENDPOINT``,
``FANOUT_AWS_ENDPOINT_URL``, ``FANOUT_JWKS_URL``): nothing of the local stack takes effect in production.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

from fanout.errors import FanoutError

#: A stage name as API Gateway allows it; it goes into the request line.
_STAGE = re.compile(r"[A-Za-z0-9_-]{1,128}")
#: A DNS name (lowercase) with an optional port, as a dev record may carry it.
_HOST_PORT = re.compile(
    r"((?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)(?::(\d{1,5}))?"
)
#: Names that are local by definition: reserved for loopback or private networks (.localhost, .internal,
#: mDNS .local, .localdomain), and LocalStack's public names that resolve to 127.0.0.1.
_LOCAL_SUFFIXES = (".localhost", ".internal", ".local", ".localdomain", ".localstack.cloud")


class EndpointRefused(FanoutError, ValueError):
    """A connection record names an API this worker may not post to; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Endpoint:
    """Where one API's posts go: the origin, the ``Host`` header, the path before ``/@connections``."""

    scheme: str
    host: str
    port: int | None
    netloc: str
    prefix: str


def is_local(host: str) -> bool:
    """Whether ``host`` (no port) names this machine or a private network rather than a public service."""
    try:  # as the resolver reads it: IDNA maps fullwidth digits and letters to ASCII (127.0.0.1, localhost)
        host = host.encode("idna").decode("ascii")
    except UnicodeError:  # an empty or overlong label: no resolver reads it, so never a public host
        return True
    host = host.removesuffix(".")  # "localhost." is localhost to a resolver
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(host)
    except ValueError:
        try:  # the C resolver also reads 127.1, 0x7f.1 and 2130706433 as IPv4 addresses
            address = ipaddress.IPv4Address(socket.inet_aton(host))
        except (OSError, ValueError):
            return host == "localhost" or host.endswith(_LOCAL_SUFFIXES) or "." not in host
    # not is_global: also the shared address space 100.64.0.0/10 (carrier NAT, Tailscale's addresses, a
    # VPC's secondary range), which is_private leaves out, though no public service is reached there
    return address.is_private or address.is_loopback or address.is_unspecified or not address.is_global


def checked_url(url: str, *, dev: bool, example: str, query: bool = False) -> SplitResult:
    """``url`` split, when a setting may name it: http(s) with a host, no credentials or fragment (nor a
    query unless ``query``), and outside dev https to a public host. Otherwise ``ValueError`` with the
    reason, never the URL, which may carry a secret; ``example`` shows what the setting expects."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"must be a URL such as {example}")
    if parts.username or parts.password or parts.fragment:
        raise ValueError("must carry no credentials or fragment")
    if parts.query and not query:
        raise ValueError("must carry no query")
    if parts.scheme != "https" and not dev:
        raise ValueError("must be https when FANOUT_ENV=production")
    if is_local(parts.hostname) and not dev:  # the local stack's kind of host: loopback, private, one label
        raise ValueError("must name a public host, not a local one, when FANOUT_ENV=production")
    try:
        if parts.port == 0:  # urlsplit checks the port only when it is read
            raise ValueError
    except ValueError:
        raise ValueError("has a port out of range") from None
    return parts


def override_endpoint(url: str, *, dev: bool) -> Endpoint:
    """The endpoint that ``FANOUT_MANAGEMENT_ENDPOINT`` names; ``ValueError`` when it cannot be one."""
    parts = checked_url(url, dev=dev, example="https://{apiId}.execute-api.{region}.amazonaws.com/{stage}")
    assert parts.hostname is not None  # checked_url refuses a URL without a host
    return Endpoint(parts.scheme, parts.hostname, parts.port, parts.netloc, parts.path.rstrip("/"))


class EndpointPolicy:
    """Decides where the posts for a record's (domainName, stage) go, or refuses them."""

    def __init__(
        self, *, region: str, dev: bool, api_ids: Iterable[str] = (), override: str | None = None
    ) -> None:
        self.region = region
        self.dev = dev
        self.api_ids = frozenset(api_ids)
        self.override = override_endpoint(override, dev=dev) if override else None
        suffix = "amazonaws.com.cn" if region.startswith("cn-") else "amazonaws.com"
        self._aws = re.compile(rf"([a-z0-9]+)\.execute-api\.{re.escape(region)}\.{re.escape(suffix)}")

    def resolve(self, domain_name: str, stage: str) -> Endpoint:
        """The endpoint for a record's API; ``EndpointRefused`` when posts may not go there."""
        if self.override is not None:
            return self.override  # the configured endpoint serves every record, whatever it names
        if not _STAGE.fullmatch(stage):
            raise EndpointRefused("the stage is not a stage name")
        domain = domain_name.lower()
        aws = self._aws.fullmatch(domain)
        if aws is not None:
            if self.api_ids and aws[1] not in self.api_ids:
                raise EndpointRefused("the API id is not in FANOUT_API_IDS")
            return Endpoint("https", domain, None, domain, f"/{stage}")
        if not self.dev:
            raise EndpointRefused(f"not an execute-api host of {self.region}")
        named = _HOST_PORT.fullmatch(domain)
        if named is None:
            raise EndpointRefused("not a host name")
        host, port = named[1], int(named[2]) if named[2] else None
        if port is not None and not 0 < port < 65536:
            raise EndpointRefused("the port is out of range")
        if not is_local(host):
            raise EndpointRefused(f"neither an execute-api host of {self.region} nor a local name")
        return Endpoint("http", host, port, domain, f"/{stage}")
