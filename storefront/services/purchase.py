"""Buying a points pack or the Lifetime plan: orders built from OUR catalog, paid at Stripe.

Three ways to pay, one order model:

* :func:`start_payment` -- a PaymentIntent for the catalog amount; the buyer pays on our page
  with the Payment Element (optionally saving the card);
* :func:`pay_with_saved_card` -- the server confirms that PaymentIntent with one of the
  buyer's own saved cards (3-D Secure comes back as ``requires_action`` for the page);
* :func:`start_checkout` -- a Checkout Session; the buyer pays on Stripe's page.

The Stripe object is created *before* the order row: if Stripe fails, nothing is stored and
nothing can be charged; if our insert failed after Stripe answered, the PaymentIntent or
Session is never shown to the buyer, so it can never be paid. Amounts come only from the
catalog row; the browser sends a lookup key (or a Stripe price id for the JSON API), never an
amount.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, or_, select, update

from ..extensions import db
from ..i18n import gettext as _
from ..models import Order, OrderTransition, Price, User
from ..models.base import utcnow
from ..models.order import PAYABLE as PAYABLE  # re-exported: views still read these here
from ..models.order import SYNCABLE as SYNCABLE
from ..models.order import OrderStatus, new_order_id
from ..stripe_gateway import GatewayError, PaymentDeclined, StripeUnavailable, get_gateway, idempotency_key
from . import accounts, cards, fulfilment, orders
from .errors import ServiceError, unavailable
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: the status page asks Stripe about one order at most this often, whoever polls
SYNC_INTERVAL = timedelta(seconds=3)
MIN_AMOUNT = {"usd": 50, "eur": 50, "gbp": 30}
MAX_AMOUNT = 99_999_999
SUPPORTED_CURRENCIES = frozenset({"usd", "eur", "gbp"})


@dataclass
class PaymentStep:
    """What the page does next after a server-side confirm."""

    order: Order
    status: str  # the order's status
    client_secret: str | None = None  # for stripe.handleNextAction when status is requires_action
    message: str | None = None


# --- catalog checks -------------------------------------------------------------------------------


def _one_time_price(price: Price | None) -> Price:
    if price is None or not price.active or not price.product.active:
        raise ServiceError(_("That product is not for sale."), code="price_not_found", status=404)
    if price.interval:
        raise ServiceError(
            _("Plans are subscriptions; choose a plan from your account page."),
            code="subscription_not_supported",
            status=400,
        )
    check_amount(price)
    return price


def check_amount(price: Price) -> None:
    """Refuse prices Stripe would refuse, before asking Stripe."""
    if price.currency not in SUPPORTED_CURRENCIES:
        raise ServiceError(f"{price.currency.upper()} is not a supported currency.", code="currency_not_supported")
    if price.unit_amount < MIN_AMOUNT.get(price.currency, 50):
        raise ServiceError(_("That amount is below the minimum we can charge."), code="amount_too_small")
    if price.unit_amount > MAX_AMOUNT:
        raise ServiceError(_("That amount is above the maximum we can charge."), code="amount_too_large")


def price_for_lookup_key(lookup_key: str) -> Price:
    return _one_time_price(db.session.scalar(select(Price).where(Price.lookup_key == lookup_key)))


def price_for_stripe_id(stripe_price_id: str) -> Price:
    return _one_time_price(db.session.scalar(select(Price).where(Price.stripe_price_id == stripe_price_id)))


def _check_buyer(user: User, price: Price) -> str:
    """Refuse a second Lifetime; the buyer's Stripe customer (created on first need). Ends the
    read: the caller has read everything else it sends to Stripe before this."""
    if price.product.entitlement and user.lifetime_since is not None:
        raise ServiceError(_("You already own the Lifetime plan."), code="already_owned", status=409)
    read_then_release()
    try:
        return accounts.ensure_stripe_customer(user)
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err


def new_order(
    user: User | None, price: Price, public_id: str, method: str, *, reason: str | None = None, **stripe_ids: str
) -> Order:
    """The order row for a purchase Stripe has already accepted, with its first transition
    (``user`` None: a guest's Checkout order, :mod:`.guest_orders`)."""
    product = price.product
    order = Order(
        public_id=public_id,
        user_id=user.id if user is not None else None,
        price_id=price.id,
        lookup_key=price.lookup_key,
        product_name=product.name,
        points=product.points,
        entitlement=product.entitlement,
        amount=price.unit_amount,
        currency=price.currency,
        method=method,
        status="pending",
        **stripe_ids,
    )
    db.session.add(order)
    db.session.add(
        OrderTransition(
            order=order, from_status=None, to_status="pending", source="buyer", reason=reason or f"{method} started"
        )
    )
    db.session.commit()
    return order


def order_metadata(user: User, price: Price, public_id: str) -> dict[str, str]:
    return {"order_id": public_id, "user_id": str(user.id), "lookup_key": price.lookup_key}


def create_checkout_session(
    customer: str,
    stripe_price_id: str,
    metadata: dict[str, str],
    *,
    mode: str,
    return_urls: Callable[[str], tuple[str, str]],
) -> dict[str, Any]:
    """A Checkout Session for one unit of the price. Our order id travels in its metadata and
    in that of what it creates (the PaymentIntent, or the subscription). Raises GatewayError."""
    public_id = metadata["order_id"]
    success_url, cancel_url = return_urls(public_id)
    created = "payment_intent_data" if mode == "payment" else "subscription_data"
    return get_gateway().create_checkout_session(
        {
            "mode": mode,
            "customer": customer,
            "client_reference_id": public_id,
            "line_items": [{"price": stripe_price_id, "quantity": 1}],
            "metadata": metadata,
            created: {"metadata": metadata},
            "success_url": success_url,
            "cancel_url": cancel_url,
        },
        idempotency_key=idempotency_key("order", public_id, "checkout-session"),
    )


# --- paying on our page -----------------------------------------------------------------------------


def start_payment(user: User, lookup_key: str, *, save_card: bool = False) -> Order:
    """Create the PaymentIntent (catalog amount) and its order; the page confirms it."""
    price = price_for_lookup_key(lookup_key)
    public_id = new_order_id()
    amount, currency, name = price.unit_amount, price.currency, price.product.name
    metadata = order_metadata(user, price, public_id)
    customer = _check_buyer(user, price)  # the read ends there: Stripe next
    try:
        pi = get_gateway().create_payment_intent(
            amount=amount,
            currency=currency,
            customer=customer,
            metadata=metadata,
            description=name,
            setup_future_usage="off_session" if save_card else None,
            idempotency_key=idempotency_key("order", public_id, "payment-intent"),
        )
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err
    return new_order(user, price, public_id, "payment_element", stripe_payment_intent_id=pi["id"])


def client_secret(order: Order) -> str:
    """The PaymentIntent's client secret, fetched when the pay page needs it (never stored)."""
    if order.stripe_payment_intent_id is None:  # a Checkout order: nothing to pay on our page
        raise ServiceError(_not_payable_message(order), code="order_not_payable", status=409)
    read_then_release()
    try:
        return str(get_gateway().retrieve_payment_intent(order.stripe_payment_intent_id)["client_secret"])
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err


def saved_cards(user: User) -> list[dict[str, Any]]:
    """The buyer's cards at Stripe (empty if Stripe is unreachable: the page still works)."""
    if not user.stripe_customer_id:
        return []
    read_then_release()
    try:
        return get_gateway().list_cards(user.stripe_customer_id)
    except GatewayError as err:
        log.warning("saved cards unavailable: %s", err.code)
        return []


def pay_with_saved_card(
    user: User, order: Order, payment_method_id: str, *, attempt: str, return_url: str
) -> PaymentStep:
    """Confirm ``order``'s PaymentIntent with one of ``user``'s saved cards.

    ``attempt`` is a nonce from the pay form: a double-submitted form confirms once.
    """
    if order.status not in PAYABLE or order.stripe_payment_intent_id is None:
        raise ServiceError(_not_payable_message(order), code="order_not_payable", status=409)
    order_id, pi_id, public_id = order.id, order.stripe_payment_intent_id, order.public_id
    read_then_release()
    try:  # the one ownership check for a card: 404 if unknown, 503 if Stripe is down
        cards.own_card(user, payment_method_id)
    except ServiceError as err:
        message = err.message if err.status == 404 else f"{err.message} Nothing was charged."
        raise ServiceError(message, code=err.code, status=err.status) from err
    gateway = get_gateway()
    if order.method not in ("saved_card", "subscription_invoice"):
        with unit_of_work():
            db.session.execute(update(Order).where(Order.id == order_id).values(method="saved_card"))
    try:
        pi = gateway.confirm_payment_intent(
            pi_id,
            payment_method=payment_method_id,
            return_url=return_url,
            idempotency_key=idempotency_key("order", public_id, "confirm", attempt),
        )
    except PaymentDeclined as err:
        pi = err.payment_intent or gateway.retrieve_payment_intent(pi_id)
        order = apply(pi, source="buyer")
        return PaymentStep(order, order.status, message=err.user_message)
    except GatewayError as err:
        return _after_failed_confirm(pi_id, err)
    order = apply(pi, source="buyer")
    secret = pi.get("client_secret") if pi.get("status") == "requires_action" else None
    return PaymentStep(order, order.status, client_secret=secret)


#: PaymentIntent states in which a confirm already went through (in this tab or another)
_CONFIRMED = frozenset({"succeeded", "processing", "requires_capture", "requires_action"})


def _after_failed_confirm(pi_id: str, err: GatewayError) -> PaymentStep:
    """Stripe refused (or did not answer) our confirm. The PaymentIntent may still have been
    paid -- by another tab's confirm, or by this one before the connection dropped -- so the
    answer comes from re-reading it, never from the error alone."""
    try:
        pi = get_gateway().retrieve_payment_intent(pi_id)
    except GatewayError:
        if isinstance(err, StripeUnavailable):
            raise ServiceError(
                err.user_message + " If your payment went through, this order "
                "will show it shortly; please check it before paying again.",
                code=err.code,
                status=503,
            ) from err
        raise unavailable(err, " Nothing was charged.") from err
    if pi.get("status") not in _CONFIRMED:
        raise unavailable(err, " Nothing was charged.") from err  # nothing happened at Stripe: nothing was charged
    order = apply(pi, source="buyer")
    if pi.get("status") == "requires_action":
        return PaymentStep(
            order,
            order.status,
            client_secret=pi.get("client_secret"),
            message="Your bank asks you to confirm this payment.",
        )
    return PaymentStep(order, order.status, message=_not_payable_message(order))


def _not_payable_message(order: Order) -> str:
    """Why an order can't be paid (again), in the buyer's words."""
    if order.status == "paid":
        return _("This order is already paid (perhaps in another tab); nothing more was charged.")
    if order.status == "processing":
        return _(
            "The payment for this order is already processing (perhaps from another tab); nothing more was charged."
        )
    return _("This order can no longer be paid (it is %(status)s).", status=order.status.replace("_", " "))


# --- Checkout redirect ------------------------------------------------------------------------------


def start_checkout(user: User, price: Price, *, return_urls: Callable[[str], tuple[str, str]]) -> tuple[Order, str]:
    """A Checkout Session for ``price`` and its order; returns (order, the session's url).

    ``return_urls(order_public_id)`` gives the success and cancel URLs (Stripe replaces
    ``{CHECKOUT_SESSION_ID}`` in the success URL itself).
    """
    price = _one_time_price(price)
    stripe_price_id = price.stripe_price_id
    if not stripe_price_id:
        raise ServiceError(_("That product is not available for Checkout yet."), code="price_not_found", status=404)
    public_id = new_order_id()
    metadata = order_metadata(user, price, public_id)
    customer = _check_buyer(user, price)  # the read ends there: Stripe next
    try:
        session = create_checkout_session(customer, stripe_price_id, metadata, mode="payment", return_urls=return_urls)
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err
    order = new_order(user, price, public_id, "checkout", stripe_checkout_session_id=session["id"])
    return order, session["url"]


def cancel_checkout(order: Order) -> Order:
    """The buyer came back through ``cancel_url``: expire the session so it can't be paid
    later, and cancel the order. If it was paid meanwhile, record that instead."""
    session_id = order.stripe_checkout_session_id
    if order.status not in PAYABLE or not session_id:
        return order
    read_then_release()
    gateway = get_gateway()
    try:
        session = gateway.expire_checkout_session(
            session_id, idempotency_key=idempotency_key("order", order.public_id, "expire")
        )
    except GatewayError:
        try:
            session = gateway.retrieve_checkout_session(session_id)
        except GatewayError as err:
            raise unavailable(err, " Nothing was charged.") from err
        return apply_session(session, source="sync")
    with unit_of_work():
        locked = orders.lock_order(order.id)
        if session.get("status") == "expired":
            orders.move(locked, OrderStatus.CANCELED, source="buyer", reason="Left Checkout")
        else:
            fulfilment.apply_checkout_session(session, source="sync")
    return db.session.get_one(Order, order.id)


# --- applying and syncing ------------------------------------------------------------------------


def apply(pi: dict[str, Any], *, source: str) -> Order:
    """Apply a PaymentIntent fetched for one of our orders; returns that order, fresh."""
    with unit_of_work():
        order = fulfilment.apply_payment_intent(pi, source=source)
    if order is None:  # its id came from our order, so it is always found
        raise LookupError(f"no order for PaymentIntent {pi.get('id')}")
    return db.session.get_one(Order, order.id, populate_existing=True)


def apply_session(session: dict[str, Any], *, source: str) -> Order:
    """Apply a Checkout Session fetched for one of our orders; returns that order, fresh."""
    with unit_of_work():
        order = fulfilment.apply_checkout_session(session, source=source)
    if order is None:  # its id came from our order, so it is always found
        raise LookupError(f"no order for Checkout Session {session.get('id')}")
    return db.session.get_one(Order, order.id, populate_existing=True)


def sync_if_due(order: Order) -> Order:
    """Ask Stripe about an unsettled order, at most once per ``SYNC_INTERVAL`` whoever polls.

    The slot is claimed with a conditional UPDATE, so concurrent polls make one call. A poll
    that does not win the slot answers from the database.
    """
    if order.status not in SYNCABLE:
        return order
    order_id, public_id = order.id, order.public_id
    pi_id, session_id = order.stripe_payment_intent_id, order.stripe_checkout_session_id
    now = utcnow()
    with unit_of_work():
        claimed = cast(
            CursorResult[Any],
            db.session.execute(  # an UPDATE without RETURNING
                update(Order)
                .where(Order.id == order_id, or_(Order.synced_at.is_(None), Order.synced_at < now - SYNC_INTERVAL))
                .values(synced_at=now)
                .execution_options(synchronize_session=False)
            ),
        ).rowcount
    if not claimed:
        return order
    gateway = get_gateway()
    try:
        if pi_id:
            return apply(gateway.retrieve_payment_intent(pi_id), source="sync")
        if session_id:
            return apply_session(gateway.retrieve_checkout_session(session_id), source="sync")
    except GatewayError as err:
        log.warning("sync of order %s failed: %s", public_id, err.code)
    return db.session.get_one(Order, order_id, populate_existing=True)


def new_attempt_nonce() -> str:
    return secrets.token_urlsafe(12)
