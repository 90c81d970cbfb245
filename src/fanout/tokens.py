"""Connect tokens: HS256 JWTs whose ``sub`` is the user id."""

from __future__ import annotations

import time

import jwt

from fanout.errors import AuthError


def sign(user_id: str, key: str, ttl_s: int = 3600, audience: str | None = None) -> str:
    """A signed token for ``user_id`` valid for ``ttl_s`` seconds."""
    now = int(time.time())
    claims: dict[str, object] = {"sub": user_id, "iat": now, "exp": now + ttl_s}
    if audience:
        claims["aud"] = audience
    return jwt.encode(claims, key, algorithm="HS256")


def verify(token: str | None, key: str, audience: str | None = None) -> str:
    """The user id a token was issued for; ``AuthError`` when it is missing, forged or expired."""
    if not token:
        raise AuthError("missing token")
    try:
        claims = jwt.decode(
            token, key, algorithms=["HS256"], audience=audience, options={"require": ["sub", "exp"]}
        )
    except jwt.PyJWTError as exc:
        raise AuthError(f"invalid token: {type(exc).__name__}") from None
    subject = claims["sub"]
    if not isinstance(subject, str) or not subject:
        raise AuthError("invalid token: empty subject")
    return subject
