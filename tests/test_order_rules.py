"""The order state machine and its status groups (models/order.py): pure rules, no app needed."""

from __future__ import annotations

import pytest

from storefront.models.order import (
    COLLECTED,
    PAYABLE,
    REFUNDABLE,
    REFUNDED,
    SETTLED,
    STATUSES,
    SYNCABLE,
    TERMINAL,
    TRANSITIONS,
    Order,
    OrderStatus,
)

S = OrderStatus


def _reachable(start: str) -> set[str]:
    seen, todo = {start}, [start]
    while todo:
        for following in TRANSITIONS[todo.pop()]:
            if following not in seen:
                seen.add(following)
                todo.append(following)
    return seen


def test_every_status_has_its_transitions_and_goes_only_to_statuses() -> None:
    assert set(TRANSITIONS) == set(STATUSES) == set(OrderStatus)
    assert all(following <= set(STATUSES) for following in TRANSITIONS.values())
    assert all(status not in following for status, following in TRANSITIONS.items())


def test_statuses_are_plain_strings_in_a_stable_order() -> None:
    # the CHECK constraint and the admin's filter list them in this order
    assert STATUSES[:4] == ("pending", "requires_action", "processing", "paid")
    assert all(type(status) is str for status in STATUSES)
    paid: str = "paid"  # as read from the database
    assert paid == S.PAID and f"{S.PARTIALLY_REFUNDED}" == "partially_refunded"
    assert paid in {S.PAID} and S.PAID in {paid}  # hashes like its value


def test_every_status_is_reachable_from_pending() -> None:
    assert _reachable(S.PENDING) == set(STATUSES)


def test_terminal_statuses_go_nowhere() -> None:
    assert sorted(TERMINAL) == ["canceled", "expired", "refunded"]
    for status in TERMINAL:
        assert TRANSITIONS[status] == frozenset()
        assert not any(Order(status=status).can_move_to(other) for other in STATUSES)


def test_nothing_goes_back_to_pending() -> None:
    assert all(S.PENDING not in following for following in TRANSITIONS.values())


def test_money_received_is_never_unreceived() -> None:
    """From a collected status an order only moves among collected ones: a late
    ``payment_failed`` or ``expired`` cannot undo ``paid``."""
    for status in COLLECTED:
        assert _reachable(status) <= COLLECTED
        assert not any(Order(status=status).can_move_to(other) for other in SYNCABLE)


def test_money_is_received_only_through_paid() -> None:
    for status in SYNCABLE:
        collected_next = TRANSITIONS[status] & COLLECTED
        assert collected_next == {S.PAID}


@pytest.mark.parametrize("status", sorted(SYNCABLE))
def test_an_unpaid_order_can_still_be_paid_or_end(status: str) -> None:
    order = Order(status=status)
    assert order.can_move_to(S.PAID)
    assert order.can_move_to(S.CANCELED)
    assert not order.can_move_to(S.REFUNDED)


def test_groups() -> None:
    assert PAYABLE < SYNCABLE == PAYABLE | {S.PROCESSING}
    assert REFUNDABLE < COLLECTED and REFUNDED < COLLECTED
    assert not SYNCABLE & COLLECTED
    assert S.DISPUTED not in REFUNDABLE  # Stripe refuses to refund a disputed charge
    # the status page polls until settled: unsettled orders are the ones Stripe may still move,
    # except ``failed``, which is settled (the buyer has an answer) yet may be retried
    assert set(STATUSES) - SETTLED == SYNCABLE - {S.FAILED}
    assert TERMINAL < SETTLED
    assert COLLECTED < SETTLED


def test_settled_property_follows_the_group() -> None:
    assert [s for s in STATUSES if Order(status=s).settled] == [s for s in STATUSES if s in SETTLED]
