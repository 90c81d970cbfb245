"""Connect tokens: HS256 JWTs signed with a shared key (local use, ``fanout token``), and the product's own
RS256/ES256 login tokens checked against its JWKS.

The key source follows the token header's ``alg``: HS256 goes to the shared key only (none in production
without ``FANOUT_JWT_SECRET``), RS256/ES256 to the JWKS only, anything else (``none`` included) is refused.
So a token signed with HS256 using the public key as its secret never meets that public key.

JWKS keys come from PyJWT's ``PyJWKClient``: the key set is cached for ``FANOUT_JWKS_CACHE_S``, a ``kid``
not in it forces one refresh at most every ``FANOUT_JWKS_REFRESH_S`` (a stream of forged kids cannot
turn into a stream of fetches), and every fetch is bounded by ``FANOUT_JWKS_TIMEOUT_S``. A fetch that fails
or answers no key set, with no last set to serve (below), refuses the token (``AuthError``), never the
route, and the provider is not asked again for ``FANOUT_JWKS_REFRESH_S`` either (``_KeySet``): PyJWT
starts its wait after a fetch that succeeded only, so while the provider failed every token, a forged
kid's too, fetched once more. The fetch is blocking (urllib), so it runs in a thread: the emulator's loop
keeps serving other sockets meanwhile.

A fetch that fails while the last key set fetched is at most ``FANOUT_JWKS_CACHE_S + FANOUT_JWKS_STALE_S``
old serves that set instead (``jwks_stale``, once per failed fetch): one blip of the provider when the cache
expires no longer refuses every JWKS connect for ``FANOUT_JWKS_REFRESH_S``. A provider that answers a key
set is always believed: a kid it no longer serves is refused, stale or not.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import jwt

from fanout.config import Settings
from fanout.errors import AuthError
from fanout.logging import get_logger

log = get_logger("fanout.tokens")

#: Algorithms of the product's own tokens; the JWKS key must be of the same kind.
JWKS_ALGORITHMS = ("RS256", "ES256")
MAX_TOKEN_CHARS = 8192  # far above any real JWT; bounds the work a hostile one causes
MAX_USER_ID_CHARS = 256  # the record's userId, as section 2 bounds user ids
#: The longest lifetime `fanout token` signs, a day: a token cannot be revoked short of changing the key.
MAX_TOKEN_TTL_S = 86_400


def sign(user_id: str, key: str, ttl_s: int = 3600, audience: str | None = None) -> str:
    """A signed token for ``user_id`` valid for ``ttl_s`` seconds."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_s}
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, key, algorithm="HS256")


def _user(claims: dict[str, Any], claim: str) -> str:
    user = claims.get(claim)
    if not isinstance(user, str) or not 0 < len(user) <= MAX_USER_ID_CHARS:
        raise AuthError(f"invalid token: {claim} is not a user id")
    return user


def verify(token: str | None, key: str, audience: str | None = None, leeway_s: float = 0) -> str:
    """The user id an HS256 token was issued for; ``AuthError`` when it is missing, forged or expired
    (``leeway_s`` past ``exp``, or ahead of its ``nbf`` or ``iat``)."""
    if not token:
        raise AuthError("missing token")
    if not token.isascii():  # base64url and dots only; PyJWT lets a lone surrogate's UnicodeEncodeError out
        raise AuthError("invalid token: malformed")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=["HS256"],
            audience=audience,
            leeway=leeway_s,
            options={"require": ["sub", "exp"]},
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {type(exc).__name__}") from None
    return _user(claims, "sub")


class _Stale(Exception):
    """What ``_KeySet.fetch_data`` raises in place of a failure while the last key set may serve."""

    def __init__(self, jwk_set: jwt.PyJWKSet) -> None:
        super().__init__("the last key set serves")
        self.jwk_set = jwk_set


class _KeySet(jwt.PyJWKClient):
    """PyJWT's JWKS client, whose wait between fetches also follows a fetch that failed, and which serves
    the last key set fetched while fetches fail, for ``stale_s`` past its lifespan.

    PyJWT waits ``cooldown_duration`` before refreshing for an unknown ``kid`` only after a fetch that
    succeeded: while the provider is down, throttles us or answers no key set, each token (a forged kid,
    or any token once the cached set has expired) fetched again, so a stream of forged tokens became a
    stream of requests to a provider already failing, each holding its connect for up to the timeout.
    Here a failed fetch is not tried again for ``retry_s``: meanwhile a fetch fails at once, as the last
    one did (unreachable, or unreadable), without a request.

    A fetch that fails (or would, within ``retry_s``) while the last good set was fetched at most
    ``lifespan + stale_s`` ago serves that set instead. It is not returned from ``fetch_data``: PyJWT's
    ``get_jwk_set`` caches what that returns, dated now, so the stale set would then serve a whole lifespan
    more with no retry, past the bound. ``fetch_data`` raises it (``_Stale``) and ``get_jwk_set`` returns it
    uncached: the cache stays expired, every token asks ``fetch_data`` again (no request within
    ``retry_s``), and the first fetch after ``retry_s`` that succeeds ends it."""

    def __init__(self, uri: str, *, retry_s: float, stale_s: float, lifespan: float, **kwargs: Any) -> None:
        super().__init__(uri, lifespan=lifespan, **kwargs)
        self._retry_s = retry_s
        self._stale_until_s = lifespan + stale_s if stale_s > 0 else None  # after the last good fetch
        self._failed: tuple[float, type[Exception]] | None = None  # (when, what to raise meanwhile)
        self._good: tuple[float, jwt.PyJWKSet] | None = None  # (when, the last key set fetched)

    def get_jwk_set(self, refresh: bool = False) -> jwt.PyJWKSet:
        with self._client_lock:
            try:
                return super().get_jwk_set(refresh)
            except _Stale as stale:
                return stale.jwk_set

    def fetch_data(self) -> Any:
        failed = self._failed
        if failed is not None and time.monotonic() - failed[0] < self._retry_s:
            self._serve_stale()  # logged when that fetch failed
            raise failed[1]("the last fetch of the key set failed; not asked again yet")
        try:
            data = super().fetch_data()
        except (jwt.PyJWKClientConnectionError, OSError) as exc:
            self._fetch_failed(jwt.PyJWKClientConnectionError, exc)
            raise
        # not JSON, nested past the parser, or a key of the wrong shape ("alg": [...]): jwks_unreadable
        except (ValueError, RecursionError, TypeError) as exc:
            self._fetch_failed(ValueError, exc)
            raise
        except jwt.PyJWTError as exc:  # JSON, but no key set
            self._fetch_failed(jwt.PyJWKClientError, exc)
            raise
        jwk_set = jwt.PyJWKSet.from_dict(data)  # PyJWT's cache just parsed it: it holds usable keys
        self._failed = None
        self._good = (time.monotonic(), jwk_set)
        return jwk_set  # parsed: get_jwk_set takes it as it is

    def _fetch_failed(self, kind: type[Exception], exc: BaseException) -> None:
        """Raises ``_Stale`` when the last key set may serve instead, logging it; else returns (to fail)."""
        self._failed = (time.monotonic(), kind)
        self._serve_stale(exc)

    def _serve_stale(self, failure: BaseException | None = None) -> None:
        good, until_s = self._good, self._stale_until_s
        if good is None or until_s is None:
            return
        age_s = time.monotonic() - good[0]
        if age_s > until_s:
            return
        if failure is not None:  # once per failed fetch: the tokens meanwhile ask no one
            log.warning("jwks_stale", age_s=round(age_s, 1), error=type(failure).__name__)
        raise _Stale(good[1]) from None


class Verifier:
    """Verifies connect tokens with the keys the settings allow; built once per process."""

    def __init__(self, settings: Settings) -> None:
        self._hs256 = settings.hs256_key()
        self._audience = settings.jwt_audience
        self._issuer = settings.jwt_issuer
        self._claim = settings.jwt_user_claim
        self._leeway_s = settings.jwt_leeway_s  # an identity provider's clock a little ahead of ours
        self._jwks: jwt.PyJWKClient | None = None
        if settings.jwks_url:
            self._jwks = _KeySet(
                settings.jwks_url,
                retry_s=settings.jwks_refresh_s,
                stale_s=settings.jwks_stale_s,
                lifespan=settings.jwks_cache_s,
                timeout=settings.jwks_timeout_s,
                cooldown_duration=settings.jwks_refresh_s,
                headers={"User-Agent": "fanout"},
            )

    async def verify(self, token: str | None) -> str:
        """The user id of a valid token; ``AuthError`` otherwise (never a key or the token in it)."""
        if not token:
            raise AuthError("missing token")
        if len(token) > MAX_TOKEN_CHARS:
            raise AuthError("token too long")
        if not token.isascii():  # as in ``verify``: header bytes that are not UTF-8 arrive as surrogates
            raise AuthError("invalid token: malformed")
        try:
            alg = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError:
            raise AuthError("invalid token: malformed") from None
        if alg == "HS256" and self._hs256 is not None:
            return verify(token, self._hs256, self._audience, self._leeway_s)
        if alg in JWKS_ALGORITHMS and self._jwks is not None:
            return await self._verify_jwks(token, self._jwks)
        raise AuthError(f"invalid token: algorithm {str(alg)[:16]!r} not accepted")

    async def _verify_jwks(self, token: str, jwks: jwt.PyJWKClient) -> str:
        try:
            key = await asyncio.to_thread(jwks.get_signing_key_from_jwt, token)
        except (jwt.PyJWKClientConnectionError, OSError):  # OSError: reset while the answer was read
            log.warning("jwks_unreachable")  # every JWKS connect fails until it answers again
            raise AuthError("JWKS unreachable") from None
        except (ValueError, RecursionError, TypeError) as exc:  # PyJWT lets these out of an answer that
            # is no key set: a proxy's page, bytes that are not text, JSON nested past the parser's depth,
            # a key of the wrong shape ("alg": [...])
            log.warning("jwks_unreadable", error=type(exc).__name__)
            raise AuthError("JWKS unreadable") from None
        except jwt.PyJWTError as exc:  # unknown kid (after the allowed refresh), a bad key set
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=list(JWKS_ALGORITHMS),
                audience=self._audience,
                issuer=self._issuer,
                leeway=self._leeway_s,
                options={"require": ["exp", "iss", self._claim]},
            )
        except jwt.PyJWTError as exc:
            raise AuthError(f"invalid token: {type(exc).__name__}") from None
        return _user(claims, self._claim)
