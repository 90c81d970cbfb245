"""Connect tokens: HS256 with the user id as subject."""

import time

import jwt
import pytest

from fanout.errors import AuthError
from fanout.tokens import sign, verify

K = "k" * 32
OTHER = "o" * 32


def test_round_trip_gives_the_user_id() -> None:
    """A token signed for u1 verifies to u1."""
    assert "u1" == verify(sign("u1", K), K)


@pytest.mark.parametrize(
    "token",
    [None, "", "not-a-jwt", sign("u1", OTHER), sign("u1", K, ttl_s=-10),
     jwt.encode({"sub": "u1"}, K, algorithm="HS256"), jwt.encode({"sub": "u1", "exp": 9e9}, K * 2, algorithm="HS384"),
     sign("u1", K) + "\udcff"],
    ids=["none", "empty", "garbage", "wrong-key", "expired", "no-exp", "wrong-alg", "lone-surrogate"],
)  # fmt: skip
def test_bad_tokens_are_refused(token: str | None) -> None:
    """Missing, forged, expired or differently signed tokens raise AuthError."""
    with pytest.raises(AuthError):
        verify(token, K)


def test_a_leeway_takes_a_token_just_expired_or_not_yet_valid_and_no_more() -> None:
    """Within leeway_s of exp, nbf or iat a token verifies; past it, it is refused as before."""
    now = int(time.time())
    ahead = jwt.encode({"sub": "u1", "exp": now + 60, "iat": now + 5, "nbf": now + 5}, K, algorithm="HS256")
    assert "u1" == verify(ahead, K, leeway_s=30)
    assert "u1" == verify(sign("u1", K, ttl_s=-10), K, leeway_s=30)
    for token in (ahead, sign("u1", K, ttl_s=-10)):
        with pytest.raises(AuthError):
            verify(token, K)
    with pytest.raises(AuthError):
        verify(sign("u1", K, ttl_s=-60), K, leeway_s=30)
