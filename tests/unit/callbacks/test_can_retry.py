"""`can_retry`: when the console offers an operator's retry of a callback, the rule `retry_delivery` applies."""

from __future__ import annotations

import pytest

from app.callbacks.service import can_retry
from app.models import CallbackDelivery, DeliveryState


@pytest.mark.parametrize(
    ("state", "attempts", "logged", "expected"),
    [
        (DeliveryState.FAILED, 7, 7, True),
        (DeliveryState.PENDING, 2, 2, True),  # waiting for its next attempt
        (DeliveryState.PENDING, 3, 2, False),  # an attempt is in flight: a retry would send twice
        (DeliveryState.DELIVERED, 1, 1, False),
        (DeliveryState.CANCELLED, 0, 0, False),
    ],
)
def test_failed_or_waiting_deliveries_can_be_retried(
    state: DeliveryState, attempts: int, logged: int, expected: bool
) -> None:
    delivery = CallbackDelivery(state=state.value, attempts=attempts)
    assert can_retry(delivery, logged_attempts=logged) is expected
