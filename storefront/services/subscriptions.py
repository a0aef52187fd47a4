"""Subscriptions: start (on our page or through Checkout), change plan, cancel, resume, pay an
overdue invoice, and keep our record in step with Stripe.

* Starting on our page creates the Stripe subscription first (``default_incomplete``: its first
  invoice waits for the buyer), then the order for that first invoice; the buyer pays it on the
  usual pay page (Payment Element or a saved card, 3-D Secure included) and the usual status
  page polls it. Checkout (``mode=subscription``) creates the order first, as for one-offs, and
  learns the invoice when the session completes.
* Each paid invoice is an order credited once by invoice id (``services.invoices``).
* Our ``Subscription`` row is only ever written from a subscription object fetched from Stripe
  (``subscription_sync.apply_subscription``), whatever the webhook said.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select

from ..cache import due
from ..extensions import db
from ..i18n import gettext as _
from ..models import Order, Price, Product, Subscription, User
from ..models.base import utcnow
from ..models.order import COLLECTED, PAYABLE, new_order_id
from ..models.subscription import LIVE_STATUSES
from ..stripe_gateway import GatewayError, StripeNotFound, get_gateway, idempotency_key
from . import accounts, fulfilment, stripe_objects, subscription_sync
from .errors import NotFound, ServiceError, unavailable
from .invoices import apply_invoice, ensure_invoice_order
from .purchase import check_amount, create_checkout_session, new_order, order_metadata
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: the account page asks Stripe about a buyer's subscriptions at most this often (all workers
#: together: key ``subscription-sync:<cus_id>`` in the shared cache, storefront/cache.py)
SYNC_SECONDS = 10


def _not_found() -> NotFound:
    return NotFound("We couldn't find that subscription.", code="subscription_not_found")


# --- reading -------------------------------------------------------------------------------------


def plans() -> list[Price]:
    """The subscription plans on sale, cheapest first."""
    return list(
        db.session.scalars(
            select(Price)
            .join(Price.product)
            .where(Price.active.is_(True), Product.active.is_(True), Price.interval.is_not(None))
            .order_by(Price.unit_amount)
        )
    )


def plan_price(lookup_key: str) -> Price:
    price = db.session.scalar(
        select(Price)
        .join(Price.product)
        .where(Price.lookup_key == lookup_key, Price.active.is_(True), Product.active.is_(True))
    )
    if price is None or not price.interval or not price.stripe_price_id:
        raise ServiceError(_("That plan is not available."), code="price_not_found", status=404)
    check_amount(price)
    return price


def live_subscription(user_id: int) -> Subscription | None:
    return db.session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status.in_(LIVE_STATUSES))
        .order_by(Subscription.id.desc())
        .limit(1)
    )


def own_subscription(user: User, public_id: str) -> Subscription:
    """The subscription if it is ``user``'s (admins: anyone's); 404 otherwise."""
    row = db.session.scalar(select(Subscription).where(Subscription.public_id == public_id))
    if row is None or (row.user_id != user.id and not user.is_admin):
        raise _not_found()
    return row


def past_due_subscription(user_id: int) -> Subscription | None:
    return db.session.scalar(
        select(Subscription)
        .where(Subscription.user_id == user_id, Subscription.status.in_(("past_due", "unpaid")))
        .limit(1)
    )


# --- syncing with Stripe -------------------------------------------------------------------------


def _apply(
    sub: dict[str, Any], *, source: str, fetched_at: datetime, asked_at: datetime | None = None
) -> Subscription | None:
    """Apply Stripe's answer in its own unit of work; ``asked_at`` when the answer is a read's."""
    with unit_of_work():
        row = subscription_sync.apply_subscription(sub, source=source, fetched_at=fetched_at, asked_at=asked_at)
        row_id = row.id if row is not None else None
    return db.session.get(Subscription, row_id, populate_existing=True) if row_id else None


def refresh(stripe_subscription_id: str, *, source: str) -> Subscription | None:
    """Fetch the subscription from Stripe and apply it."""
    read_then_release()
    asked = utcnow()
    sub = get_gateway().retrieve_subscription(stripe_subscription_id)
    return _apply(sub, source=source, fetched_at=utcnow(), asked_at=asked)


def apply_paid_invoice(invoice: dict[str, Any], *, source: str) -> Order | None:
    with unit_of_work():
        order = apply_invoice(invoice, source=source)
        order_id = order.id if order is not None else None
    return db.session.get(Order, order_id, populate_existing=True) if order_id else None


def sync(user: User, *, force: bool = False) -> None:
    """Ask Stripe about the buyer's subscriptions and recent invoices (at most every
    ``SYNC_SECONDS`` across the workers): catches up on anything a lost webhook would have told us,
    e.g. a subscription started through Checkout or a renewal. Never raises.

    Fetch, then apply: what we know is read first and that read ends before Stripe is asked;
    each object fetched is applied in its own short unit of work."""
    customer = user.stripe_customer_id
    if not customer:
        return
    force = force or _unknown_subscription(user.id)
    read_then_release()
    if not due(f"subscription-sync:{customer}", SYNC_SECONDS, force=force):
        return
    gateway = get_gateway()
    try:
        asked = utcnow()
        subs = gateway.list_subscriptions(customer)
        received = utcnow()
        paid = (
            [
                i["id"]
                for i in gateway.list_customer_invoices(customer, limit=12)
                if i.get("status") == "paid" and stripe_objects.subscription_of_invoice(i)
            ]
            if subs
            else []
        )
        for sub in subs:
            _apply(sub, source="sync", fetched_at=received, asked_at=asked)
        for invoice_id in [i for i in paid if not _invoice_credited(i)]:
            read_then_release()
            apply_paid_invoice(gateway.retrieve_invoice(invoice_id), source="sync")
        enforce_lifetime(user)
    except GatewayError as err:
        log.warning("subscription sync for user %s failed: %s", user.id, err.code)


def _unknown_subscription(user_id: int) -> bool:
    """An order names a subscription we have no row for (started through Checkout, its
    webhook not here yet): worth asking Stripe now rather than in a few seconds."""
    return (
        db.session.scalar(
            select(Order.id)
            .outerjoin(Subscription, Subscription.stripe_subscription_id == Order.stripe_subscription_id)
            .where(Order.user_id == user_id, Order.stripe_subscription_id.is_not(None), Subscription.id.is_(None))
            .limit(1)
        )
        is not None
    )


def _invoice_credited(invoice_id: str) -> bool:
    """Credited, or paid without points (an upgrade's invoice): nothing left to apply."""
    from . import points

    return (
        points.recorded(fulfilment.invoice_points_key(invoice_id))
        or db.session.scalar(
            select(Order.id).where(Order.stripe_invoice_id == invoice_id, Order.status.in_(COLLECTED)).limit(1)
        )
        is not None
    )


def enforce_lifetime(user: User) -> None:
    """A Lifetime owner with a subscription still set to renew: stop it at the period's end
    (normally done when Lifetime is paid; this retries if Stripe was down then)."""
    if user.lifetime_since is None:
        return
    row = live_subscription(user.id)
    if row is None or row.cancel_at_period_end:
        return
    with unit_of_work():
        subscription_sync.end_subscriptions_for_lifetime(user.id, reason=f"user-{user.public_id}")


# --- starting a subscription -----------------------------------------------------------------------


def _check_buyer(user: User, price: Price) -> tuple[str, Subscription | None]:
    """Refuse a second live subscription and Lifetime owners; returns (customer, an
    unpaid subscription to replace or resume)."""
    if user.lifetime_since is not None:
        raise ServiceError(
            _("You own the Lifetime plan: there is nothing to subscribe to."), code="already_owned", status=409
        )
    existing = live_subscription(user.id)
    if existing is not None and existing.status != "incomplete":
        raise ServiceError(
            _("You already have a subscription. Change its plan instead."), code="already_subscribed", status=409
        )
    read_then_release()
    try:
        return accounts.ensure_stripe_customer(user), existing
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err


def _unpaid_first_order(row: Subscription) -> Order | None:
    return db.session.scalar(
        select(Order)
        .where(Order.stripe_subscription_id == row.stripe_subscription_id, Order.status.in_(PAYABLE))
        .order_by(Order.id)
        .limit(1)
    )


def _drop_unpaid(user: User, row: Subscription) -> None:
    """The buyer started another plan before paying the first: cancel the unpaid one (its
    open invoice is voided, so it can never be charged)."""
    try:
        cancel_now(row, by=f"buyer:{user.id}", reason="replaced")
    except ServiceError as err:
        if err.status != 404:
            raise


def subscribe(user: User, lookup_key: str, *, attempt: str) -> Order:
    """Start ``lookup_key``'s plan; returns the order for its first invoice (pay it next).

    ``attempt`` is a nonce from the form: a double-submitted form makes one subscription.
    """
    attempt = _attempt(attempt)
    price = plan_price(lookup_key)
    stripe_price_id, price_key = price.stripe_price_id, price.lookup_key
    if stripe_price_id is None:  # plan_price refuses such a price; this tells mypy
        raise ServiceError(_("That plan is not available."), code="price_not_found", status=404)
    metadata = {"user_id": str(user.id), "lookup_key": price_key}
    key = idempotency_key("subscription", user.public_id, price_key, attempt)
    customer, unpaid = _check_buyer(user, price)
    if unpaid is not None:
        if unpaid.price_id == price.id:
            order = _unpaid_first_order(unpaid)
            if order is not None:
                return order
        _drop_unpaid(user, unpaid)
    read_then_release()
    try:
        sub = get_gateway().create_subscription(
            customer=customer, price=stripe_price_id, metadata=metadata, idempotency_key=key
        )
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err
    received = utcnow()
    invoice = sub.get("latest_invoice") or {}
    if not isinstance(invoice, dict) or not invoice.get("id"):
        raise ServiceError(
            _("Our payment provider did not return an invoice. Nothing was charged."),
            code="invoice_missing",
            status=502,
        )
    with unit_of_work():
        subscription_sync.apply_subscription(sub, source="buyer", fetched_at=received)
        order_id = ensure_invoice_order(invoice, source="buyer")
    if order_id is None:
        raise ServiceError(_("That plan is not available."), code="price_not_found", status=404)
    return db.session.get_one(Order, order_id, populate_existing=True)


def start_checkout(user: User, lookup_key: str, *, return_urls: Callable[[str], tuple[str, str]]) -> tuple[Order, str]:
    """A Checkout Session in ``subscription`` mode and the order for its first invoice."""
    price = plan_price(lookup_key)
    public_id = new_order_id()
    stripe_price_id, metadata = str(price.stripe_price_id), order_metadata(user, price, public_id)
    customer, unpaid = _check_buyer(user, price)
    if unpaid is not None:
        _drop_unpaid(user, unpaid)
    read_then_release()
    try:
        session = create_checkout_session(
            customer, stripe_price_id, metadata, mode="subscription", return_urls=return_urls
        )
    except GatewayError as err:
        raise unavailable(err, " Nothing was charged.") from err
    order = new_order(
        user,
        price,
        public_id,
        "subscription_invoice",
        reason="subscription checkout started",
        stripe_checkout_session_id=session["id"],
    )
    return order, session["url"]


# --- changing, canceling, resuming --------------------------------------------------------------------


def update_at_stripe(row: Subscription, params: dict[str, Any], *key_parts: str) -> Subscription:
    """Send a change of ``row`` to Stripe and apply Stripe's answer."""
    stripe_id = row.stripe_subscription_id
    read_then_release()
    try:
        sub = get_gateway().update_subscription(
            stripe_id, params, idempotency_key=idempotency_key("subscription", stripe_id, *key_parts, payload=params)
        )
    except GatewayError as err:
        raise unavailable(err) from err
    return _apply(sub, source="buyer", fetched_at=utcnow()) or row


def cancel_at_period_end(row: Subscription, *, attempt: str) -> Subscription:
    if row.status not in ("active", "trialing", "past_due"):
        raise ServiceError(_("This subscription is not active."), code="subscription_not_active", status=409)
    return update_at_stripe(row, {"cancel_at_period_end": True}, "cancel", _attempt(attempt))


def resume(row: Subscription, *, attempt: str) -> Subscription:
    if not row.cancel_at_period_end or row.status not in ("active", "trialing", "past_due"):
        raise ServiceError(_("This subscription is not set to end."), code="not_canceling", status=409)
    user = db.session.get(User, row.user_id)
    if user is not None and user.lifetime_since is not None:
        raise ServiceError(
            _("You own the Lifetime plan: this subscription is no longer needed."), code="already_owned", status=409
        )
    return update_at_stripe(row, {"cancel_at_period_end": False}, "resume", _attempt(attempt))


def cancel_now(row: Subscription, *, by: str, reason: str = "admin") -> Subscription:
    """End the subscription immediately (admins; also an unpaid one being replaced)."""
    if row.status not in LIVE_STATUSES:
        raise ServiceError(_("This subscription has already ended."), code="subscription_ended", status=409)
    stripe_id = row.stripe_subscription_id
    read_then_release()
    try:
        sub = get_gateway().cancel_subscription(
            stripe_id, idempotency_key=idempotency_key("subscription", stripe_id, "cancel-now")
        )
    except StripeNotFound:
        return refresh(stripe_id, source=by) or row
    except GatewayError as err:
        raise unavailable(err) from err
    log.info("subscription %s canceled now by %s (%s)", stripe_id, by, reason)
    return _apply(sub, source=by, fetched_at=utcnow()) or row


def admin_cancel_now(admin: User, row: Subscription) -> Subscription:
    if not admin.is_admin:
        raise _not_found()
    return cancel_now(row, by=f"admin:{admin.email}")


# --- an overdue invoice ---------------------------------------------------------------------------


def open_invoice_order(row: Subscription) -> Order:
    """The order for the subscription's unpaid invoice (created on first need), to pay on the
    usual pay page with another card."""
    stripe_id = row.stripe_subscription_id
    read_then_release()
    gateway = get_gateway()
    try:
        asked = utcnow()
        sub = gateway.retrieve_subscription(stripe_id)
        received = utcnow()
        invoice_id = sub.get("latest_invoice")
        invoice_id = invoice_id.get("id") if isinstance(invoice_id, dict) else invoice_id
        invoice = gateway.retrieve_invoice(invoice_id) if invoice_id else None
    except GatewayError as err:
        raise unavailable(err) from err
    if invoice is None or invoice.get("status") != "open":
        _apply(sub, source="buyer", fetched_at=received, asked_at=asked)
        raise ServiceError(
            _("There is nothing to pay: your subscription is up to date."), code="nothing_due", status=409
        )
    with unit_of_work():
        order_id = ensure_invoice_order(invoice, source="buyer")
    if order_id is None:
        raise ServiceError(_("We couldn't find that invoice."), code="invoice_not_found", status=404)
    return db.session.get_one(Order, order_id, populate_existing=True)


# --- invoices and the billing portal -------------------------------------------------------------


@dataclass
class InvoiceRow:
    id: str
    number: str | None
    created: datetime | None
    amount_due: int
    amount_paid: int
    currency: str
    status: str
    hosted_invoice_url: str | None


def invoices(user: User) -> list[InvoiceRow]:
    customer = user.stripe_customer_id
    if not customer:
        return []
    read_then_release()
    try:
        found = get_gateway().list_customer_invoices(customer, limit=24)
    except GatewayError as err:
        raise unavailable(err) from err
    return [
        InvoiceRow(
            id=i["id"],
            number=i.get("number"),
            created=stripe_objects.ts(i.get("created")),
            amount_due=int(i.get("amount_due") or 0),
            amount_paid=int(i.get("amount_paid") or 0),
            currency=i.get("currency") or "usd",
            status=i.get("status") or "",
            hosted_invoice_url=i.get("hosted_invoice_url"),
        )
        for i in found
        if i.get("status") != "draft"
    ]


def upcoming_amount(row: Subscription) -> int | None:
    """The next renewal's amount as Stripe will bill it (pending prorations included)."""
    if row.status not in ("active", "trialing", "past_due") or row.cancel_at_period_end:
        return None
    stripe_id = row.stripe_subscription_id
    read_then_release()
    try:
        invoice = get_gateway().preview_upcoming(stripe_id)
    except GatewayError as err:
        log.info("upcoming invoice unavailable: %s", err.code)
        return None
    return int(invoice.get("amount_due") or 0)


def portal_url(user: User, return_url: str) -> str:
    key = idempotency_key("portal", user.public_id, secrets.token_urlsafe(8))
    read_then_release()
    try:
        customer = accounts.ensure_stripe_customer(user)
        read_then_release()
        session = get_gateway().create_billing_portal_session(
            customer=customer, return_url=return_url, idempotency_key=key
        )
    except GatewayError as err:
        raise unavailable(err) from err
    return str(session["url"])


def new_attempt_nonce() -> str:
    return secrets.token_urlsafe(12)


_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _attempt(attempt: str | None) -> str:
    """A form's nonce goes into an Idempotency-Key: ASCII letters, digits, ``-`` and ``_``."""
    if not attempt or not _ATTEMPT.fullmatch(attempt):
        raise ServiceError(
            _("The form is missing its token; reload the page and try again."), code="invalid_attempt", status=400
        )
    return attempt
