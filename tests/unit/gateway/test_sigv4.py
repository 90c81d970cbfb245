"""SigV4 from awscrt must match botocore's signer byte for byte."""

import hashlib
from datetime import UTC, datetime
from unittest import mock

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from fanout.gateway.sigv4 import Signer


def test_signature_matches_botocore() -> None:
    """A POST to @connections signed by awscrt carries the same Authorization as botocore's."""
    creds = Credentials("AKIDEXAMPLE", "SECRET", "SESSION")
    when = datetime(2026, 2, 17, 0, 0, 0, tzinfo=UTC)
    body = b'{"v":1}'
    host = "abc123.execute-api.us-east-1.amazonaws.com"
    path = "/beta/@connections/L0SM9cOFvHcCIhw%3D"
    ours = dict(Signer(creds, "us-east-1").sign("POST", host, path, hashlib.sha256(body).hexdigest(), when))
    request = AWSRequest("POST", f"https://{host}{path}", data=body)
    with mock.patch("botocore.auth.get_current_datetime", return_value=when.replace(tzinfo=None)):
        SigV4Auth(creds, "execute-api", "us-east-1").add_auth(request)
    assert request.headers["Authorization"] == ours["Authorization"]
    assert "SESSION" == ours["X-Amz-Security-Token"]
