import pytest

from storefront.stripe_gateway import (
    StripeGateway,
    StripeNotFound,
    StripeRequestInvalid,
    StripeUnavailable,
    get_gateway,
    idempotency_key,
)


def test_idempotency_keys_are_deterministic_and_content_sensitive():
    assert idempotency_key("customer-create-user", 7, "abc") == "customer-create-user-7-abc"
    a = idempotency_key("price", "x", payload={"amount": 1, "currency": "usd"})
    b = idempotency_key("price", "x", payload={"currency": "usd", "amount": 1})
    c = idempotency_key("price", "x", payload={"amount": 2, "currency": "usd"})
    assert a == b != c


def test_same_idempotency_key_returns_the_same_customer(app_ctx, sandbox):
    gateway = get_gateway()
    first = gateway.create_customer(
        email="k@example.com", name="K", metadata={"user_id": "1"}, idempotency_key="test-key-1"
    )
    again = gateway.create_customer(
        email="k@example.com", name="K", metadata={"user_id": "1"}, idempotency_key="test-key-1"
    )
    assert first["id"] == again["id"]
    assert len(sandbox.customers(email="k@example.com")) == 1


@pytest.mark.parametrize("mode", ["error", "rate_limit"])
def test_outages_become_stripe_unavailable(app_ctx, sandbox, mode):
    sandbox.fault(mode, count=1, path_prefix="/v1/customers")
    with pytest.raises(StripeUnavailable) as info:
        get_gateway().create_customer(email="o@example.com", name="O", metadata={}, idempotency_key="o-1")
    assert info.value.http_status == 503 and "try again" in info.value.user_message


def test_retries_ride_out_a_transient_failure(app, sandbox):
    gateway = StripeGateway("sk_test_sandbox", api_base=sandbox.url, timeout=5, max_network_retries=2, mode="sandbox")
    sandbox.fault("error", count=1, path_prefix="/v1/customers")
    customer = gateway.create_customer(email="r@example.com", name="R", metadata={}, idempotency_key="r-1")
    assert customer["id"].startswith("cus_")
    assert len(sandbox.customers(email="r@example.com")) == 1


def test_unknown_object_is_not_found_and_bad_params_are_invalid(app_ctx, sandbox):
    with pytest.raises(StripeNotFound):
        get_gateway().retrieve_customer("cus_doesnotexist")
    with pytest.raises(StripeRequestInvalid) as info:
        get_gateway().create_price(
            {"currency": "usd", "unit_amount": 100, "product": "prod_nope"}, idempotency_key="bad-1"
        )
    assert "sk_test" not in info.value.user_message
