"""Rows for tests that need one without the flow that normally makes it.

Most tests build their state through the real app (sign up over HTTP, buy through the sandbox): prefer
that. These are for the few that need a row the flow would make slowly or not at all (a stored event
with a hostile payload, an order in a given status, a subscription row). Each function adds its row to
``db.session`` and flushes (so ids and defaults are there); call them inside an app context and commit
when done. Keyword arguments override any column.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, TypeVar

from sqlalchemy import select

from storefront.extensions import db
from storefront.models import Order, Price, Product, StripeEvent, Subscription, User, utcnow

from .conftest import TEST_PASSWORD

T = TypeVar("T")


def _saved(row: T) -> T:
    db.session.add(row)
    db.session.flush()
    return row


def make_user(
    email: str = "buyer@example.com", *, name: str = "Bea Buyer", password: str = TEST_PASSWORD, **fields: Any
) -> User:
    """A user row (no Stripe customer unless ``stripe_customer_id=`` is given)."""
    user = User(email=email, name=name, **fields)
    user.set_password(password)
    return _saved(user)


def price_of(lookup_key: str) -> Price:
    """Our catalog's price for ``lookup_key`` (the ``catalog`` fixture synced it with the sandbox)."""
    price = db.session.scalar(select(Price).where(Price.lookup_key == lookup_key))
    assert price is not None, f"no price {lookup_key!r} (use the catalog fixture)"
    return price


def make_price(
    lookup_key: str = "test_points",
    *,
    unit_amount: int = 500,
    currency: str = "usd",
    interval: str | None = None,
    points: int = 100,
    **product_fields: Any,
) -> Price:
    """A product with one price, known only to our database (not at Stripe)."""
    kind = "subscription" if interval else "one_time"
    product_fields.setdefault("category", "plan" if interval else "points")
    product = _saved(
        Product(
            key=lookup_key,
            name=product_fields.pop("name", lookup_key.replace("_", " ").title()),
            kind=kind,
            points=points,
            **product_fields,
        )
    )
    return _saved(
        Price(product=product, lookup_key=lookup_key, unit_amount=unit_amount, currency=currency, interval=interval)
    )


def make_order(
    user: User, price: Price, *, status: str = "pending", method: str = "payment_element", **fields: Any
) -> Order:
    """An order for ``price``, copying what was bought from the catalog as ``services.purchase`` does.

    A ``payment_element`` order gets a made-up PaymentIntent id and a paid one its ``paid_at`` (override
    either). It credits no points: set ``user.points_balance`` too if the test needs the balance."""
    values: dict[str, Any] = dict(
        user_id=user.id,
        price_id=price.id,
        lookup_key=price.lookup_key,
        product_name=price.product.name,
        points=price.product.points,
        entitlement=price.product.entitlement,
        amount=price.unit_amount,
        currency=price.currency,
        method=method,
        status=status,
        paid_at=utcnow() if status == "paid" else None,
    )
    if method == "payment_element":
        values["stripe_payment_intent_id"] = f"pi_test_{secrets.token_hex(8)}"
    values.update(fields)
    return _saved(Order(**values))


def make_subscription(user: User, price: Price, *, status: str = "active", **fields: Any) -> Subscription:
    """Our mirror of a subscription to ``price`` (a made-up Stripe id unless given)."""
    values: dict[str, Any] = dict(
        user_id=user.id,
        price_id=price.id,
        stripe_price_id=price.stripe_price_id,
        status=status,
        stripe_subscription_id=f"sub_test_{secrets.token_hex(8)}",
    )
    values.update(fields)
    return _saved(Subscription(**values))


def make_stripe_event(
    event_type: str = "payment_intent.succeeded",
    *,
    object_id: str | None = "pi_test",
    payload: dict[str, Any] | str | None = None,
    **fields: Any,
) -> StripeEvent:
    """A stored webhook event; ``payload`` is the event JSON (a dict is serialised; default: a minimal
    event naming the id, type and object)."""
    stripe_id = fields.pop("stripe_id", f"evt_test_{secrets.token_hex(8)}")
    if payload is None:
        payload = {"id": stripe_id, "type": event_type, "data": {"object": {"id": object_id}}}
    text = payload if isinstance(payload, str) else json.dumps(payload)
    values: dict[str, Any] = dict(stripe_id=stripe_id, type=event_type, object_id=object_id, created=1, payload=text)
    values.update(fields)
    return _saved(StripeEvent(**values))


def stripe_event(event_id: str, event_type: str, obj: dict[str, Any], **fields: Any) -> dict[str, Any]:
    """A webhook event as Stripe sends it (the dict, not a stored row): ``obj`` in ``data.object``,
    created now. ``fields`` override or add top-level keys (``api_version``, ``created`` …)."""
    event: dict[str, Any] = {
        "id": event_id,
        "object": "event",
        "type": event_type,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": obj},
    }
    event.update(fields)
    return event
