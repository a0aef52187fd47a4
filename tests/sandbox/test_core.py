"""The sandbox's request pipeline: auth, parameters, errors, idempotency, pagination, expand."""

from __future__ import annotations

import json
import threading
import urllib.request

import pytest
import stripe

from .helpers import present


def _raw(sandbox, method, path, data=None, headers=None):
    request = urllib.request.Request(f"{sandbox.url}{path}", data=data, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"{}")


# --- authentication ---------------------------------------------------------------------------


def test_missing_key_is_401_with_stripes_message(sandbox):
    status, _, body = _raw(sandbox, "GET", "/v1/customers")
    assert status == 401
    assert body["error"]["type"] == "invalid_request_error"
    assert "did not provide an API key" in body["error"]["message"]


@pytest.mark.parametrize("key", ["sk_live_abc123456789", "rk_test_x", "nonsense", "sk_test_"])
def test_malformed_or_live_keys_are_refused(sandbox, key):
    client = stripe.StripeClient(key, base_addresses={"api": sandbox.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError) as info:
        client.v1.customers.list()
    assert info.value.http_status == 401
    assert "Invalid API Key" in info.value.user_message


def test_publishable_key_cannot_use_secret_endpoints(publishable_client):
    with pytest.raises(stripe.AuthenticationError) as info:
        publishable_client.v1.customers.list()
    assert "publishable API key" in info.value.user_message


def test_basic_auth_like_curl_works(sandbox):
    import base64

    token = base64.b64encode(b"sk_test_curl:").decode()
    status, _, body = _raw(sandbox, "GET", "/v1/customers", headers={"Authorization": f"Basic {token}"})
    assert status == 200 and body["object"] == "list"


# --- parameters -------------------------------------------------------------------------------


def test_unknown_parameter_is_refused_like_stripe(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.create(params={"emial": "typo@example.com"})
    assert info.value.code == "parameter_unknown"
    assert present(info.value.error).param == "emial"
    assert info.value.http_status == 400


def test_nested_unknown_parameter_names_its_path(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            params={"currency": "usd", "unit_amount": 100, "product_data": {"name": "X", "colour": "red"}}
        )
    assert present(info.value.error).param == "product_data[colour]"


def test_known_but_unimplemented_parameter_is_refused_not_ignored(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.create(params={"tax_exempt": "exempt"})
    assert info.value.code == "parameter_unsupported"
    assert "not supported by the sandbox" in info.value.user_message


def test_missing_required_parameter(client):
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(params={"unit_amount": 100, "product_data": {"name": "X"}})
    assert info.value.code == "parameter_missing"
    assert present(info.value.error).param == "currency"


def test_invalid_integer_is_refused(sandbox):
    status, _, body = _raw(
        sandbox,
        "POST",
        "/v1/prices",
        data=b"currency=usd&unit_amount=ten",
        headers={"Authorization": "Bearer sk_test_x"},
    )
    assert status == 400
    assert body["error"]["param"] == "unit_amount"


def test_browser_style_array_keys_are_understood(sandbox, client):
    client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 100, "lookup_key": "a", "product_data": {"name": "A"}}
    )
    status, _, body = _raw(
        sandbox,
        "GET",
        "/v1/prices?lookup_keys[]=a&expand[]=data.product",
        headers={"Authorization": "Bearer sk_test_x"},
    )
    assert status == 200
    assert body["data"][0]["product"]["name"] == "A"


def test_unknown_url_is_stripes_404(sandbox):
    status, _, body = _raw(sandbox, "GET", "/v1/nothing_here", headers={"Authorization": "Bearer sk_test_x"})
    assert status == 404
    assert "Unrecognized request URL" in body["error"]["message"]


def test_cors_preflight_allows_stripe_js_calls(sandbox):
    status, headers, _ = _raw(sandbox, "OPTIONS", "/v1/payment_methods")
    assert status == 204
    assert headers["Access-Control-Allow-Origin"] == "*"


# --- customers ------------------------------------------------------------------------------


def test_customer_lifecycle(client):
    customer = client.v1.customers.create(
        params={"email": "ann@example.com", "name": "Ann", "metadata": {"user_id": "42"}}
    )
    assert customer.id.startswith("cus_") and customer.livemode is False
    assert customer.invoice_settings.default_payment_method is None
    updated = client.v1.customers.update(customer.id, params={"name": "Ann B", "metadata": {"user_id": ""}})
    assert updated.name == "Ann B" and updated.metadata.to_dict() == {}
    assert client.v1.customers.retrieve(customer.id).name == "Ann B"
    deleted = client.v1.customers.delete(customer.id)
    assert deleted.deleted is True
    assert client.v1.customers.retrieve(customer.id).deleted is True
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.update(customer.id, params={"name": "x"})
    assert info.value.http_status == 404 and info.value.code == "resource_missing"


def test_customer_list_filters_by_email(client):
    for email in ("a@example.com", "b@example.com", "a@example.com"):
        client.v1.customers.create(params={"email": email})
    found = client.v1.customers.list(params={"email": "a@example.com"})
    assert len(found.data) == 2
    assert all(c.email == "a@example.com" for c in found.data)


def test_cursor_pagination_walks_everything_newest_first(client):
    made = [client.v1.customers.create(params={"name": f"c{i}"}).id for i in range(7)]
    page = client.v1.customers.list(params={"limit": 3})
    assert page.has_more and [c.id for c in page.data] == made[::-1][:3]
    seen = [c.id for c in client.v1.customers.list(params={"limit": 3}).auto_paging_iter()]
    assert seen == made[::-1]
    before = client.v1.customers.list(params={"limit": 2, "ending_before": made[3]})
    assert [c.id for c in before.data] == [made[5], made[4]]


def test_limit_out_of_range(client):
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.customers.list(params={"limit": 101})


# --- products and prices ----------------------------------------------------------------------


def test_prices_by_lookup_key_and_transfer(client):
    product = client.v1.products.create(params={"name": "Starter Plan"})
    old = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 500,
            "product": product.id,
            "lookup_key": "starter",
            "recurring": {"interval": "month"},
        }
    )
    assert old.type == "recurring" and old.recurring.interval == "month"
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(
            params={"currency": "usd", "unit_amount": 600, "product": product.id, "lookup_key": "starter"}
        )
    new = client.v1.prices.create(
        params={
            "currency": "usd",
            "unit_amount": 600,
            "product": product.id,
            "lookup_key": "starter",
            "transfer_lookup_key": True,
            "recurring": {"interval": "month"},
        }
    )
    client.v1.prices.update(old.id, params={"active": False})
    found = client.v1.prices.list(params={"lookup_keys": ["starter"]}).data
    assert [p.id for p in found] == [new.id]
    assert client.v1.prices.retrieve(old.id).lookup_key is None
    assert client.v1.prices.list(params={"active": False}).data[0].id == old.id


def test_product_update_and_list(client):
    product = client.v1.products.create(params={"name": "Pack", "metadata": {"k": "v"}})
    client.v1.products.update(product.id, params={"active": False})
    assert client.v1.products.list(params={"active": False}).data[0].id == product.id
    assert client.v1.products.list(params={"active": True}).data == []


def test_expand_replaces_ids_and_rejects_non_expandable(client):
    price = client.v1.prices.create(params={"currency": "usd", "unit_amount": 200, "product_data": {"name": "Small"}})
    expanded = client.v1.prices.retrieve(price.id, params={"expand": ["product"]})
    assert expanded.product.name == "Small"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.retrieve(price.id, params={"expand": ["currency"]})
    assert "cannot be expanded" in info.value.user_message


# --- idempotency ---------------------------------------------------------------------------


def test_idempotent_replay_returns_the_first_result(sandbox, client):
    options = {"idempotency_key": "signup-user-1"}
    first = client.v1.customers.create(params={"email": "x@example.com"}, options=options)
    again = client.v1.customers.create(params={"email": "x@example.com"}, options=options)
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(client.v1.customers.list().data) == 1


def test_same_key_other_parameters_is_an_idempotency_error(client):
    client.v1.customers.create(params={"email": "x@example.com"}, options={"idempotency_key": "k"})
    with pytest.raises(stripe.IdempotencyError) as info:
        client.v1.customers.create(params={"email": "y@example.com"}, options={"idempotency_key": "k"})
    assert info.value.http_status == 400
    assert present(info.value.error).type == "idempotency_error"


def test_concurrent_requests_with_one_key_create_one_object(sandbox, client):
    results = []

    def create():
        results.append(
            client.v1.customers.create(params={"email": "race@example.com"}, options={"idempotency_key": "race"}).id
        )

    threads = [threading.Thread(target=create) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(results)) == 1
    assert len(client.v1.customers.list(params={"email": "race@example.com"}).data) == 1


def test_concurrent_creates_all_land(client):
    def create(i):
        client.v1.customers.create(params={"name": f"n{i}"})

    threads = [threading.Thread(target=create, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(list(client.v1.customers.list(params={"limit": 100}).auto_paging_iter())) == 20


def test_failed_validation_is_not_saved_for_replay(client):
    """Stripe saves no result when validation fails, so the same key works once corrected."""
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.prices.create(params={"currency": "usd", "unit_amount": 100}, options={"idempotency_key": "retry-me"})
    price = client.v1.prices.create(
        params={"currency": "usd", "unit_amount": 100, "product_data": {"name": "Fixed"}},
        options={"idempotency_key": "retry-me"},
    )
    assert price.unit_amount == 100


def test_publishable_key_may_come_as_a_key_parameter_like_stripe_js(sandbox):
    status, _, body = _raw(
        sandbox,
        "POST",
        "/v1/payment_methods",
        data=b"type=card&card[number]=4242424242424242&card[exp_month]=12"
        b"&card[exp_year]=2040&card[cvc]=123&key=pk_test_browser",
    )
    assert status == 200, body
    assert body["card"]["last4"] == "4242"
