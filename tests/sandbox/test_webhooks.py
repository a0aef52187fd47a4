"""Events and signed webhook delivery: at least once, retried with backoff, logged, faultable."""

from __future__ import annotations

import itertools
import json
import time

import pytest
import stripe


def test_events_are_listed_and_retrievable(client):
    customer = client.v1.customers.create(params={"email": "e@example.com"})
    client.v1.customers.update(customer.id, params={"name": "E"})
    events = client.v1.events.list()
    assert [e.type for e in events.data] == ["customer.updated", "customer.created"]
    updated = client.v1.events.retrieve(events.data[0].id)
    assert updated.data.object.name == "E"
    assert updated.data.previous_attributes.to_dict() == {"name": None}
    assert updated.api_version == "2026-10-28.endive"
    only_created = client.v1.events.list(params={"type": "customer.created"})
    assert len(only_created.data) == 1


def test_delivery_is_signed_so_construct_event_accepts_it(sandbox, client, receiver, endpoint):
    customer = client.v1.customers.create(params={"email": "hook@example.com"})
    assert receiver.wait_for(lambda r: len(r.requests) == 1)
    request = receiver.requests[0]
    event = stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"], endpoint.secret)
    assert event.type == "customer.created"
    assert event.data.object.id == customer.id
    with pytest.raises(stripe.SignatureVerificationError):
        stripe.Webhook.construct_event(request["body"], request["headers"]["Stripe-Signature"], "whsec_wrong")


def test_endpoint_secret_shown_only_at_creation(client, endpoint):
    assert endpoint.secret.startswith("whsec_")
    assert "secret" not in client.v1.webhook_endpoints.retrieve(endpoint.id).to_dict()
    listed = client.v1.webhook_endpoints.list().data
    assert [e.id for e in listed] == [endpoint.id]


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://127.0.0.1/x", "http:///no-host"])
def test_endpoint_url_must_be_http_on_create_and_on_update(client, endpoint, url):
    """The sender urlopen()s the stored URL: a file: or ftp: URL must never get that far."""
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.webhook_endpoints.create(params={"url": url, "enabled_events": ["*"]})
    assert raised.value.code == "url_invalid"
    with pytest.raises(stripe.InvalidRequestError) as raised:
        client.v1.webhook_endpoints.update(endpoint.id, params={"url": url})
    assert raised.value.code == "url_invalid"
    assert client.v1.webhook_endpoints.retrieve(endpoint.id).url == endpoint.url


def test_only_enabled_events_are_delivered(sandbox, client, receiver):
    client.v1.webhook_endpoints.create(params={"url": receiver.url, "enabled_events": ["product.created"]})
    client.v1.customers.create(params={"email": "x@example.com"})
    client.v1.products.create(params={"name": "P"})
    sandbox.flush_webhooks()
    assert receiver.types() == ["product.created"]


def test_failed_delivery_is_retried_with_backoff_and_logged(sandbox, client, receiver, endpoint):
    receiver.statuses = [500, 503]
    client.v1.customers.create(params={"email": "retry@example.com"})
    assert receiver.wait_for(lambda r: len(r.requests) == 3, timeout=10)
    assert receiver.wait_for(lambda r: sandbox.deliveries()[0]["status"] == "delivered")
    log = sandbox.deliveries()[0]
    assert log["status"] == "delivered" and log["attempts"] == 3
    assert [a["status"] for a in log["attempt_log"]] == [500, 503, 200]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(log["attempt_log"])]
    assert gaps[1] > gaps[0]  # exponential backoff
    bodies = {r["body"] for r in receiver.requests}
    assert len(bodies) == 1  # the same event each time


def test_timeout_counts_as_a_failure_and_is_retried(sandbox, client, receiver, endpoint):
    receiver.delay = 6  # the test sandbox gives up after 5 s
    client.v1.customers.create(params={"email": "slow@example.com"})
    deadline = time.time() + 15
    while time.time() < deadline and sandbox.deliveries()[0]["attempts"] < 1:
        time.sleep(0.1)
    receiver.delay = 0
    first = sandbox.deliveries()[0]
    assert "timed out" in (first["attempt_log"][0]["error"] or "").lower()
    assert receiver.wait_for(lambda r: len(r.requests) >= 2, timeout=15)


def test_deleted_endpoint_receives_nothing(sandbox, client, receiver, endpoint):
    client.v1.webhook_endpoints.delete(endpoint.id)
    client.v1.customers.create(params={"email": "none@example.com"})
    sandbox.flush_webhooks()
    assert receiver.requests == []


def test_duplicate_fault_delivers_each_event_twice(sandbox, client, receiver, endpoint):
    sandbox.control("POST", "webhooks/faults", {"duplicate": True})
    client.v1.customers.create(params={"email": "twice@example.com"})
    assert receiver.wait_for(lambda r: len(r.requests) == 2)
    ids = [e["id"] for e in receiver.events()]
    assert ids[0] == ids[1]


def test_held_events_are_released_newest_first(sandbox, client, receiver, endpoint):
    sandbox.control("POST", "webhooks/faults", {"hold": True})
    customer = client.v1.customers.create(params={"email": "order@example.com"})
    client.v1.customers.update(customer.id, params={"name": "Later"})
    sandbox.flush_webhooks()
    assert receiver.requests == []
    sandbox.control("DELETE", "webhooks/faults")
    assert sandbox.control("POST", "webhooks/release")["released"] == 2
    assert receiver.wait_for(lambda r: len(r.requests) == 2)
    assert receiver.types() == ["customer.updated", "customer.created"]


def test_delay_fault_delivers_late(sandbox, client, receiver, endpoint):
    sandbox.control("POST", "webhooks/faults", {"delay": 1.0})
    started = time.time()
    client.v1.customers.create(params={"email": "late@example.com"})
    assert receiver.wait_for(lambda r: len(r.requests) == 1, timeout=5)
    assert time.time() - started >= 0.9


def test_drop_fault_loses_the_next_delivery(sandbox, client, receiver, endpoint):
    sandbox.control("POST", "webhooks/faults", {"drop": 1})
    client.v1.customers.create(params={"email": "lost@example.com"})
    client.v1.customers.create(params={"email": "kept@example.com"})
    assert receiver.wait_for(lambda r: len(r.requests) == 1)
    sandbox.flush_webhooks()
    assert len(receiver.requests) == 1
    assert receiver.events()[0]["data"]["object"]["email"] == "kept@example.com"
    assert [d["status"] for d in sandbox.deliveries()] == ["delivered", "dropped"]
    # the dropped event is still in the events list, as it would be at Stripe
    assert (
        len(
            stripe.StripeClient("sk_test_x", base_addresses={"api": sandbox.url})
            .v1.events.list(params={"type": "customer.created"})
            .data
        )
        == 2
    )


def test_webhook_payload_is_an_event_of_the_pinned_version(sandbox, client, receiver, endpoint):
    client.v1.customers.create(params={"email": "v@example.com"})
    assert receiver.wait_for(lambda r: len(r.requests) == 1)
    payload = json.loads(receiver.requests[0]["body"])
    assert payload["object"] == "event" and payload["api_version"] == "2026-10-28.endive"
    assert payload["livemode"] is False
