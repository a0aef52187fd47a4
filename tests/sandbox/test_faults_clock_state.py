"""Fault injection, the sandbox clock, and state that survives a restart."""

from __future__ import annotations

import time

import pytest
import stripe

from stripe_sandbox.testing import SandboxServer


def test_error_fault_fails_the_next_n_calls_then_recovers(sandbox, client):
    sandbox.fault("error", count=2, path_prefix="/v1/customers")
    client.v1.products.create(params={"name": "unaffected"})  # other paths are untouched
    for _ in range(2):
        with pytest.raises(stripe.APIError) as info:
            client.v1.customers.create(params={"email": "a@example.com"})
        assert info.value.http_status == 500
    assert client.v1.customers.create(params={"email": "a@example.com"}).id
    assert len(client.v1.customers.list().data) == 1  # failed calls changed nothing


def test_rate_limit_fault_answers_429(sandbox, client):
    sandbox.fault("rate_limit", count=1)
    with pytest.raises(stripe.RateLimitError) as info:
        client.v1.customers.list()
    assert info.value.http_status == 429


def test_sdk_retries_through_a_transient_fault(sandbox):
    retrying = stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.url}, max_network_retries=2)
    sandbox.fault("error", count=1)
    customer = retrying.v1.customers.create(params={"email": "r@example.com"})
    assert customer.email == "r@example.com"
    listed = retrying.v1.customers.list().data
    assert len(listed) == 1  # the retry reused the idempotency key; one customer


def test_timeout_fault_hangs_past_the_client_timeout(sandbox):
    impatient = stripe.StripeClient(
        "sk_test_x",
        base_addresses={"api": sandbox.url},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=0.5)
        if hasattr(stripe, "RequestsClient")
        else stripe.HTTPXClient(timeout=0.5),
    )
    sandbox.fault("timeout", count=1, seconds=2)
    started = time.time()
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.customers.list()
    assert time.time() - started < 1.9


def test_delay_fault_answers_normally_after_the_delay(sandbox, client):
    """A slow Stripe: the call succeeds, late (tests/test_transactions.py relies on it)."""
    sandbox.fault("delay", count=1, path_prefix="/v1/customers", seconds=1)
    started = time.time()
    customer = client.v1.customers.create(params={"email": "slow@example.com"})
    assert customer.email == "slow@example.com" and time.time() - started >= 0.95
    started = time.time()
    client.v1.customers.list()  # the fault is used up
    assert time.time() - started < 0.5


def test_fault_control_validates_input(sandbox):
    import urllib.error

    with pytest.raises(urllib.error.HTTPError) as info:
        sandbox.control("POST", "faults", {"mode": "explode", "count": 1})
    assert info.value.code == 400
    for seconds in ("abc", -1, 10_000, True):
        with pytest.raises(urllib.error.HTTPError) as info:
            sandbox.control("POST", "faults", {"mode": "delay", "seconds": seconds})
        assert info.value.code == 400


def test_clock_advances(sandbox):
    before = sandbox.control("GET", "clock")["now"]
    after = sandbox.advance_clock(86_400)["now"]
    assert 86_400 <= after - before <= 86_402


def test_objects_are_stamped_with_sandbox_time(sandbox, client):
    sandbox.advance_clock(10 * 86_400)
    customer = client.v1.customers.create(params={"name": "future"})
    assert customer.created >= time.time() + 10 * 86_400 - 5


def test_state_survives_a_restart(tmp_path):
    path = tmp_path / "state.sqlite3"
    first = SandboxServer(path).start()
    client = stripe.StripeClient("sk_test_x", base_addresses={"api": first.url}, max_network_retries=0)
    customer = client.v1.customers.create(params={"email": "keep@example.com"}, options={"idempotency_key": "keep"})
    first.advance_clock(3600)
    first.stop()

    second = SandboxServer(path).start()
    try:
        client = stripe.StripeClient("sk_test_x", base_addresses={"api": second.url}, max_network_retries=0)
        assert client.v1.customers.retrieve(customer.id).email == "keep@example.com"
        replay = client.v1.customers.create(params={"email": "keep@example.com"}, options={"idempotency_key": "keep"})
        assert replay.id == customer.id
        assert second.control("GET", "clock")["offset"] >= 3599
    finally:
        second.stop()


def test_reset_empties_everything(sandbox, client):
    client.v1.customers.create(params={"email": "gone@example.com"})
    sandbox.reset()
    assert client.v1.customers.list().data == []


def test_test_cards_are_listed(sandbox):
    cards = sandbox.control("GET", "test-cards")["cards"]
    numbers = {c["number"] for c in cards}
    assert {"4242424242424242", "4000000000000002", "4000002500003155"} <= numbers
