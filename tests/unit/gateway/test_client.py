"""Management API answers map to outcomes as API Gateway documents them."""

import pytest

from fanout.gateway.client import Outcome, outcome_of


@pytest.mark.parametrize(
    ("status", "outcome", "retry"),
    [(200, Outcome.OK, False), (410, Outcome.GONE, False), (429, Outcome.THROTTLED, True),
     (500, Outcome.SERVER_ERROR, True), (503, Outcome.SERVER_ERROR, True), (403, Outcome.FORBIDDEN, False),
     (413, Outcome.TOO_LARGE, False), (400, Outcome.REJECTED, False)],
)  # fmt: skip
def test_status_maps_to_outcome(status: int, outcome: Outcome, retry: bool) -> None:
    """410 prunes, 429/5xx retry, 403/413 never retry."""
    assert outcome == outcome_of(status)
    assert retry == outcome.retryable
