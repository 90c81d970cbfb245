"""Our SigV4 for the @connections request shape must match botocore's signer byte for byte."""

import hashlib
from datetime import UTC, datetime
from unittest import mock

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials, ReadOnlyCredentials

from fanout.gateway import sigv4
from fanout.gateway.sigv4 import Signer

HOST = "abc123.execute-api.us-east-1.amazonaws.com"
PATH = "/beta/@connections/L0SM9cOFvHcCIhw%3D"  # connection ids end in "=", encoded once by the client
WHEN = datetime(2026, 2, 17, 23, 59, 58, tzinfo=UTC)


def botocore_headers(creds: Credentials, method: str, body: bytes, when: datetime) -> dict[str, str]:
    request = AWSRequest(method, f"https://{HOST}{PATH}", data=body or None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        SigV4Auth(creds, "execute-api", "us-east-1").add_auth(request)
    return dict(request.headers)


@pytest.mark.parametrize("token", ["SESSION", None])
@pytest.mark.parametrize(("method", "body"), [("POST", b'{"v":1}'), ("GET", b""), ("DELETE", b"")])
def test_signature_matches_botocore(method: str, body: bytes, token: str | None) -> None:
    """Every method the client uses, with and without a session token, signs as botocore does."""
    creds = Credentials("AKIDEXAMPLE", "SECRET", token)
    ours = dict(Signer(creds, "us-east-1").sign(method, HOST, PATH, hashlib.sha256(body).hexdigest(), WHEN))
    theirs = botocore_headers(creds, method, body, WHEN)
    assert theirs["Authorization"] == ours["Authorization"]
    assert theirs["X-Amz-Date"] == ours["X-Amz-Date"]
    assert theirs.get("X-Amz-Security-Token") == ours.get("X-Amz-Security-Token")


def test_rotated_credentials_and_a_new_day_sign_with_the_new_key() -> None:
    """Refreshed credentials (an ECS task role) and a date past midnight both take effect."""

    class Rotating:
        def __init__(self) -> None:
            self.current = ReadOnlyCredentials("AKIDOLD", "OLDSECRET", "T1")

        def get_frozen_credentials(self) -> ReadOnlyCredentials:
            return self.current

    rotating = Rotating()
    signer = Signer(rotating, "us-east-1")
    digest = hashlib.sha256(b"x").hexdigest()
    with mock.patch.object(sigv4, "RECHECK_S", 0.0):
        first = dict(signer.sign("POST", HOST, PATH, digest, WHEN))
        rotating.current = ReadOnlyCredentials("AKIDNEW", "NEWSECRET", "T2")
        later = datetime(2026, 2, 18, 0, 0, 1, tzinfo=UTC)
        second = dict(signer.sign("POST", HOST, PATH, digest, later))
    assert "AKIDOLD/20260217/" in first["Authorization"]
    expected = botocore_headers(Credentials("AKIDNEW", "NEWSECRET", "T2"), "POST", b"x", later)
    assert expected["Authorization"] == second["Authorization"]
    assert "T2" == second["X-Amz-Security-Token"]
