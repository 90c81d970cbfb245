"""The product's own tokens: RS256/ES256 verified against a JWKS the test serves over HTTP, keys cached
and rotated, issuer and audience checked, the user id read from a configurable claim."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import socket
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from structlog.testing import capture_logs

from fanout.config import Settings
from fanout.errors import AuthError
from fanout.lifecycle import Lifecycle
from fanout.tokens import Verifier, sign
from tests.conftest import free_port
from tests.unit.lifecycle import events
from tests.unit.lifecycle.conftest import MakeLifecycle

ISSUER = "https://login.example.test/"
AUDIENCE = "realtime"


@dataclass
class Key:
    kid: str
    private: Any
    alg: str

    def jwk(self) -> dict[str, Any]:
        algorithm = RSAAlgorithm if self.alg == "RS256" else ECAlgorithm
        public = algorithm.to_jwk(self.private.public_key(), as_dict=True)
        return {**public, "kid": self.kid, "use": "sig", "alg": self.alg}

    def sign(self, **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "iat": now, **claims}
        return jwt.encode(body, self.private, algorithm=self.alg, headers={"kid": self.kid})


def rsa_key(kid: str) -> Key:
    return Key(kid, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


def ec_key(kid: str) -> Key:
    return Key(kid, ec.generate_private_key(ec.SECP256R1()), "ES256")


@dataclass
class Jwks:
    """A JWKS endpoint: the keys it serves now, and how often it was fetched."""

    url: str
    keys: list[Key]
    fetches: int = 0
    delay_s: float = 0.0
    raw: bytes | None = None  # served instead of the key set
    status: int = 200
    site: web.TCPSite | None = None

    async def stop(self) -> None:
        """Stop listening: fetches then meet a refused connection."""
        assert self.site is not None
        await self.site.stop()


@pytest.fixture
async def jwks() -> AsyncIterator[Jwks]:
    served = Jwks("", [rsa_key("r1"), ec_key("e1")])

    async def keys(request: web.Request) -> web.Response:
        served.fetches += 1
        if served.delay_s:
            await asyncio.sleep(served.delay_s)
        if served.status != 200:
            return web.Response(status=served.status, text="<html>bad gateway</html>")
        if served.raw is not None:
            return web.Response(body=served.raw, content_type="application/json")
        return web.json_response({"keys": [k.jwk() for k in served.keys]})

    app = web.Application()
    app.router.add_get("/.well-known/jwks.json", keys)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    port = free_port()
    served.site = web.TCPSite(runner, "127.0.0.1", port)
    await served.site.start()
    served.url = f"http://127.0.0.1:{port}/.well-known/jwks.json"
    yield served
    await runner.cleanup()


async def _lifecycle(make: MakeLifecycle, jwks: Jwks, **fields: Any) -> Lifecycle:
    settings = {"jwks_url": jwks.url, "jwt_issuer": ISSUER, "jwt_audience": AUDIENCE, "jwt_user_claim": "uid"}
    return await make(**(settings | fields))


async def _status(lc: Lifecycle, token: str, cid: str = "c1") -> int:
    return int((await lc.handle(events.connect(cid, token=token)))["statusCode"])


@pytest.mark.parametrize("which", [0, 1], ids=["RS256", "ES256"])
async def test_a_token_signed_by_a_served_key_connects_as_its_user_claim(
    make_lifecycle: MakeLifecycle, jwks: Jwks, which: int
) -> None:
    """An RS256 or ES256 token signed by a key of the JWKS connects; the record's user is the configured
    claim (uid), not sub."""
    lc = await _lifecycle(make_lifecycle, jwks)
    assert 200 == await _status(lc, jwks.keys[which].sign(uid="u-42", sub="someone-else"))
    record = await lc.services.store.get("c1")
    assert record is not None and "u-42" == record["userId"]


async def test_keys_are_cached_between_connects(make_lifecycle: MakeLifecycle, jwks: Jwks) -> None:
    """Ten connects with tokens of known kids fetch the key set once."""
    lc = await _lifecycle(make_lifecycle, jwks)
    for i in range(10):
        assert 200 == await _status(lc, jwks.keys[i % 2].sign(uid=f"u{i}"), f"c{i}")
    assert 1 == jwks.fetches


async def test_a_rotated_key_is_picked_up(make_lifecycle: MakeLifecycle, jwks: Jwks) -> None:
    """After the issuer rotates to a new key, a token with the new kid makes one refresh and connects;
    the retired key's tokens are refused once the set is refreshed."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_refresh_s=0)
    old = jwks.keys[0]
    assert 200 == await _status(lc, old.sign(uid="u1"), "c1")
    new = rsa_key("r2")
    jwks.keys = [new]
    assert 200 == await _status(lc, new.sign(uid="u2"), "c2")
    assert 2 == jwks.fetches
    assert 401 == await _status(lc, old.sign(uid="u1"), "c3")  # the refreshed set no longer holds r1


async def test_unknown_kids_refresh_the_set_at_most_once_per_interval(
    make_lifecycle: MakeLifecycle, jwks: Jwks
) -> None:
    """Tokens naming kids nobody serves are refused, and within FANOUT_JWKS_REFRESH_S they cause no fetch
    beyond the first: forged kids cannot make the lifecycle hammer the identity provider."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_refresh_s=60)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u1"), "c0")
    for i in range(5):
        assert 401 == await _status(lc, ec_key(f"forged{i}").sign(uid="u1"), f"c{i + 1}")
    assert 1 == jwks.fetches


async def test_a_failing_jwks_is_asked_again_at_most_once_per_interval(
    make_lifecycle: MakeLifecycle, jwks: Jwks
) -> None:
    """While the provider fails, tokens (forged kids, or any once no key set is cached) cause one fetch per
    FANOUT_JWKS_REFRESH_S, not one each, and the provider is asked again once that interval has passed."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_refresh_s=0.5)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u1"), "c0")
    jwks.raw = b"<html>down for maintenance</html>"
    await asyncio.sleep(0.6)  # past the wait after the good fetch: a forged kid refreshes, and that fails
    for i in range(5):
        assert 401 == await _status(lc, ec_key(f"forged{i}").sign(uid="u1"), f"f{i}")
    assert 200 == await _status(lc, jwks.keys[1].sign(uid="u2"), "cached")  # the cached set still serves
    assert 2 == jwks.fetches
    cold = await _lifecycle(make_lifecycle, jwks, jwks_refresh_s=0.5)  # nothing cached: every token fetches
    for i in range(5):
        assert 401 == await _status(cold, jwks.keys[i % 2].sign(uid="u1"), f"k{i}")
    assert 3 == jwks.fetches
    jwks.raw = None  # the provider is back: asked again once the interval has passed
    await asyncio.sleep(0.6)
    assert 200 == await _status(cold, jwks.keys[0].sign(uid="u1"), "back")
    assert 4 == jwks.fetches


async def _fail(jwks: Jwks, how: str) -> None:
    """The provider fails as ``how`` says: refuses connections, answers 503, or answers no key set."""
    if how == "unreachable":
        await jwks.stop()
    elif how == "503":
        jwks.status = 503
    elif how == "html":
        jwks.raw = b"<html>down for maintenance</html>"
    else:
        jwks.raw = b'{"keys": []}'


_FAILURES = ["unreachable", "503", "html", "no key set"]


@pytest.mark.parametrize("how", _FAILURES)
async def test_a_failing_jwks_serves_the_last_key_set_once_the_cache_expired(
    make_lifecycle: MakeLifecycle, jwks: Jwks, how: str
) -> None:
    """The cached set has expired and the provider fails (unreachable, 503, an HTML page, no keys): tokens
    of the last set fetched still connect, one jwks_stale line tells it (its age, not the URL), and the
    provider is not asked again within FANOUT_JWKS_REFRESH_S. Before, each was refused for 30 s."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_cache_s=0.2, jwks_stale_s=2)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u0"), "c0")
    await _fail(jwks, how)
    await asyncio.sleep(0.3)  # the cached set has expired
    with capture_logs() as logs:
        for i in range(4):
            assert 200 == await _status(lc, jwks.keys[i % 2].sign(uid=f"u{i}"), f"c{i + 1}")
    assert ["jwks_stale"] == [line["event"] for line in logs]
    assert 0.2 < logs[0]["age_s"] < 2 and "url" not in logs[0]
    assert (1 if how == "unreachable" else 2) == jwks.fetches  # a stopped server counts nothing


@pytest.mark.parametrize("how", ["unreachable", "html"])
async def test_the_last_key_set_serves_no_longer_than_cache_and_stale(
    make_lifecycle: MakeLifecycle, jwks: Jwks, how: str
) -> None:
    """Past FANOUT_JWKS_CACHE_S + FANOUT_JWKS_STALE_S after the last good fetch, a failing provider
    refuses JWKS connects as it did, logged jwks_unreachable or jwks_unreadable, within the wait after a
    failed fetch or after it."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_cache_s=0.2, jwks_stale_s=1, jwks_refresh_s=0.8)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u0"), "c0")
    await _fail(jwks, how)
    await asyncio.sleep(0.3)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u1"), "c1")  # stale, 0.3 s old
    await asyncio.sleep(1)  # past 1.2 s after the good fetch, and the wait after the failed one: asked again
    failure = "jwks_unreachable" if how == "unreachable" else "jwks_unreadable"
    with capture_logs() as logs:
        assert 401 == await _status(lc, jwks.keys[0].sign(uid="u2"), "c2")
        assert 401 == await _status(lc, jwks.keys[1].sign(uid="u3"), "c3")  # within the wait: no request
    assert [failure, failure] == [line["event"] for line in logs]
    assert (1 if how == "unreachable" else 3) == jwks.fetches


@pytest.mark.parametrize("how", ["unreachable", "html"])
async def test_no_stale_key_set_serves_with_jwks_stale_s_zero(
    make_lifecycle: MakeLifecycle, jwks: Jwks, how: str
) -> None:
    """FANOUT_JWKS_STALE_S=0 keeps the behaviour before it: once the cached set has expired, a failing
    provider refuses every JWKS connect."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_cache_s=0.2, jwks_stale_s=0)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u0"), "c0")
    await _fail(jwks, how)
    await asyncio.sleep(0.3)
    failure = "jwks_unreachable" if how == "unreachable" else "jwks_unreadable"
    with capture_logs() as logs:
        assert 401 == await _status(lc, jwks.keys[0].sign(uid="u1"), "c1")
    assert [failure] == [line["event"] for line in logs]


async def test_a_key_the_provider_no_longer_serves_is_refused_without_stale(
    make_lifecycle: MakeLifecycle, jwks: Jwks
) -> None:
    """A provider that answers a key set is believed: a kid rotated out of it is refused once the cache
    expired, though the last set held it; no stale set serves it."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_cache_s=0.2, jwks_stale_s=1, jwks_refresh_s=0)
    old = jwks.keys[0]
    assert 200 == await _status(lc, old.sign(uid="u0"), "c0")
    new = rsa_key("r2")
    jwks.keys = [new]
    await asyncio.sleep(0.3)
    with capture_logs() as logs:
        assert 401 == await _status(lc, old.sign(uid="u1"), "c1")
        assert 200 == await _status(lc, new.sign(uid="u2"), "c2")
    assert [] == [line["event"] for line in logs]


async def test_a_failing_jwks_is_asked_again_each_interval_while_the_last_set_serves(
    make_lifecycle: MakeLifecycle, jwks: Jwks
) -> None:
    """While the last set serves, the provider is asked again once FANOUT_JWKS_REFRESH_S has passed since
    the failed fetch, not a whole FANOUT_JWKS_CACHE_S later: each failed fetch logs jwks_stale once, and
    the first good answer ends it (a key rotated out then is refused)."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_cache_s=1.5, jwks_stale_s=5, jwks_refresh_s=0.4)
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u0"), "c0")
    jwks.status = 503
    await asyncio.sleep(1.6)
    with capture_logs() as logs:
        assert 200 == await _status(lc, jwks.keys[0].sign(uid="u1"), "c1")
        assert 200 == await _status(lc, jwks.keys[0].sign(uid="u2"), "c2")
        await asyncio.sleep(0.5)  # past the wait, well within a lifespan of the failed fetch
        assert 200 == await _status(lc, jwks.keys[0].sign(uid="u3"), "c3")
    assert ["jwks_stale", "jwks_stale"] == [line["event"] for line in logs]
    assert 3 == jwks.fetches
    old = jwks.keys[0]
    jwks.status = 200
    jwks.keys = jwks.keys[1:]  # r1 rotated out while the provider was failing
    await asyncio.sleep(0.5)
    with capture_logs() as logs:
        assert 401 == await _status(lc, old.sign(uid="u4"), "c4")  # the set fetched again holds no r1
        assert 200 == await _status(lc, jwks.keys[0].sign(uid="u5"), "c5")
    assert [] == [line["event"] for line in logs]
    assert 4 == jwks.fetches


@pytest.mark.parametrize(
    ("claims", "case"),
    [
        ({"iss": "https://evil.example.test/"}, "wrong issuer"),
        ({"aud": "another-api"}, "wrong audience"),
        ({"exp": int(time.time()) - 60}, "expired"),
        ({"uid": ""}, "empty user claim"),
        ({"uid": 42}, "user claim not a string"),
        ({"uid": "u" * 257}, "user claim too long"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
async def test_tokens_with_wrong_claims_are_refused(
    make_lifecycle: MakeLifecycle, jwks: Jwks, claims: dict[str, Any], case: str
) -> None:
    """A served key's signature is not enough: the issuer, audience, expiry and user claim must hold."""
    lc = await _lifecycle(make_lifecycle, jwks)
    assert 401 == await _status(lc, jwks.keys[0].sign(**({"uid": "u1"} | claims)))


@pytest.mark.parametrize(("leeway_s", "status"), [(None, 200), (0, 401)], ids=["default leeway", "no leeway"])
async def test_a_token_from_a_clock_a_little_ahead_connects_within_the_leeway(
    make_lifecycle: MakeLifecycle, jwks: Jwks, leeway_s: float | None, status: int
) -> None:
    """A fresh token from an identity provider whose clock runs 5 s ahead (iat and nbf in our future)
    connects within FANOUT_JWT_LEEWAY_S (30 s): with none, every fresh token was refused for 5 s."""
    lc = await _lifecycle(make_lifecycle, jwks, **({} if leeway_s is None else {"jwt_leeway_s": leeway_s}))
    ahead = int(time.time()) + 5
    assert status == await _status(lc, jwks.keys[0].sign(uid="u1", iat=ahead, nbf=ahead))


async def test_a_token_without_the_user_claim_is_refused(make_lifecycle: MakeLifecycle, jwks: Jwks) -> None:
    """A token carrying sub but not the configured claim is refused."""
    lc = await _lifecycle(make_lifecycle, jwks)
    assert 401 == await _status(lc, jwks.keys[0].sign(sub="u1"))


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hand_made(header: dict[str, Any], claims: dict[str, Any], secret: bytes | None) -> str:
    """A JWT built by hand, as an attacker would: PyJWT refuses to make these."""
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest() if secret else b""
    return f"{signing_input}.{_b64(signature)}"


async def test_alg_none_and_hs256_with_the_public_key_are_refused(
    make_lifecycle: MakeLifecycle, jwks: Jwks
) -> None:
    """An unsigned token (alg none) and an HS256 token whose secret is the served public key are refused,
    in dev (HS256 tokens meet only the development key) and in production with no HS256 key at all."""
    key = jwks.keys[0]
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 300, "uid": "u1", "sub": "u1"}
    pem = key.private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    jwk_json = json.dumps(key.jwk()).encode()
    forged = [
        _hand_made({"alg": "none", "typ": "JWT", "kid": key.kid}, claims, None),
        _hand_made({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims, pem),
        _hand_made({"alg": "HS256", "typ": "JWT", "kid": key.kid}, claims, jwk_json),
        _hand_made(
            {"alg": "RS256", "typ": "JWT", "kid": key.kid}, claims, pem
        ),  # an HMAC as an RSA signature
    ]
    lc = await _lifecycle(make_lifecycle, jwks)
    for i, token in enumerate(forged):
        assert 401 == await _status(lc, token, f"c{i}")
    assert 200 == await _status(lc, key.sign(uid="u1"), "ok")  # the same lifecycle takes a real one
    # .test never resolves (RFC 6761): a fetch would fail, and the refusal must come before any
    production = Verifier(
        Settings(env="production", jwks_url="https://login.example.test/jwks.json", jwt_issuer=ISSUER)
    )
    for token in forged[:3]:
        with pytest.raises(AuthError, match="not accepted"):  # refused before any key is fetched
            await production.verify(token)


async def test_an_unreachable_or_slow_jwks_refuses_within_its_timeout(
    make_lifecycle: MakeLifecycle, jwks: Jwks, closed_port: int
) -> None:
    """A JWKS that does not answer within FANOUT_JWKS_TIMEOUT_S refuses the connect (401) in about that
    time; the lifecycle never waits on the identity provider unbounded."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_timeout_s=0.3)
    jwks.delay_s = 5
    started = time.monotonic()
    assert 401 == await _status(lc, jwks.keys[0].sign(uid="u1"))
    assert time.monotonic() - started < 2
    gone = await _lifecycle(make_lifecycle, jwks, jwks_url=f"http://127.0.0.1:{closed_port}/jwks.json")
    assert 401 == await _status(gone, jwks.keys[0].sign(uid="u1"))


@pytest.mark.parametrize(
    "raw",
    [
        b"<html>down for maintenance</html>",
        b"\xff\xfe\x00",
        b'{"keys":' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        b'{"keys": [{"kty": "RSA", "kid": "r1", "alg": ["RS256"], "n": "x", "e": "AQAB"}]}',
    ],
    ids=["html", "not-text", "nested", "alg-a-list"],
)
async def test_a_jwks_answer_that_is_no_key_set_refuses_the_connect(
    make_lifecycle: MakeLifecycle, jwks: Jwks, raw: bytes
) -> None:
    """A JWKS answering 200 with something that is not a key set (a proxy's page, bytes that are not text,
    JSON nested past the parser, a key whose alg is a list: PyJWT's TypeError) refuses the connect (401)
    and logs jwks_unreadable: no route error."""
    lc = await _lifecycle(make_lifecycle, jwks, jwks_refresh_s=0)  # asked again at once when it answers
    jwks.raw = raw
    with capture_logs() as logs:
        assert 401 == await _status(lc, jwks.keys[0].sign(uid="u1"))
    assert ["jwks_unreadable"] == [line["event"] for line in logs]
    errors = lc.metrics.registry.get_sample_value(
        "fanout_lifecycle_route_errors_total", {"route": "$connect"}
    )
    assert errors is None  # never counted
    jwks.raw = None  # the provider answers again: the next connect fetches the set and passes
    assert 200 == await _status(lc, jwks.keys[0].sign(uid="u1"), "c2")


async def test_a_jwks_connection_reset_mid_answer_refuses_the_connect(
    make_lifecycle: MakeLifecycle, jwks: Jwks
) -> None:
    """A JWKS whose connection is reset while its answer is read refuses the connect (401) and logs
    jwks_unreachable, as an unreachable one does: no route error."""

    async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n" + b'{"keys":[' + b" " * 3000)
        await writer.drain()
        await asyncio.sleep(0.1)
        sock = writer.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close with a RST
        writer.transport.abort()

    server = await asyncio.start_server(reset, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        lc = await _lifecycle(make_lifecycle, jwks, jwks_url=f"http://127.0.0.1:{port}/jwks.json")
        with capture_logs() as logs:
            assert 401 == await _status(lc, jwks.keys[0].sign(uid="u1"))
    assert ["jwks_unreachable"] == [line["event"] for line in logs]


async def test_hs256_stays_for_local_use_beside_jwks(make_lifecycle: MakeLifecycle, jwks: Jwks) -> None:
    """In dev, the development HS256 key still connects while JWKS tokens work too."""
    lc = await _lifecycle(make_lifecycle, jwks)
    assert 200 == await _status(lc, sign("u1", lc.services.settings.jwt_key(), audience=AUDIENCE))
