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

import hashlib
import logging
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import select

from ..extensions import db
from ..models import Order, Price, Product, Subscription, User
from ..models.base import utcnow
from ..models.order import COLLECTED, PAYABLE, new_order_id
from ..models.subscription import LIVE_STATUSES
from ..stripe_gateway import GatewayError, StripeNotFound, StripeRequestInvalid, get_gateway, idempotency_key
from . import accounts, fulfilment, stripe_objects, subscription_sync
from .invoices import apply_invoice, ensure_invoice_order
from .purchase import check_amount, create_checkout_session, new_order, order_metadata, transaction

log = logging.getLogger(__name__)

#: how proration works on a plan change (see README: "Account: saved cards and subscriptions"):
#: an upgrade invoices (and charges) the difference now, a downgrade credits the next invoice
UPGRADE_PRORATION = "always_invoice"
DOWNGRADE_PRORATION = "create_prorations"
#: a plan-change preview can be confirmed for this long; then the buyer reviews it again
PREVIEW_MAX_AGE = 600
_PREVIEW_SALT = "storefront.subscriptions.plan-change-preview"
#: the account page asks Stripe about a buyer's subscriptions at most this often (per process)
SYNC_SECONDS = 10.0
_synced: dict[str, float] = {}  # by Stripe customer id
_synced_lock = threading.Lock()


class SubscriptionError(Exception):
    """An action that cannot go ahead; ``message`` is for the buyer, ``code`` for JSON."""

    def __init__(self, message: str, *, code: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status


def _unavailable(err: GatewayError, suffix: str = "") -> SubscriptionError:
    return SubscriptionError(err.user_message + suffix, code=err.code,
                             status=err.http_status if err.http_status >= 400 else 502)


def _not_found() -> SubscriptionError:
    return SubscriptionError("We couldn't find that subscription.", code="subscription_not_found",
                             status=404)


# --- reading -------------------------------------------------------------------------------------

def plans() -> list[Price]:
    """The subscription plans on sale, cheapest first."""
    return list(db.session.scalars(
        select(Price).join(Price.product)
        .where(Price.active.is_(True), Product.active.is_(True), Price.interval.is_not(None))
        .order_by(Price.unit_amount)))


def plan_price(lookup_key: str) -> Price:
    price = db.session.scalar(select(Price).join(Price.product).where(
        Price.lookup_key == lookup_key, Price.active.is_(True), Product.active.is_(True)))
    if price is None or not price.interval or not price.stripe_price_id:
        raise SubscriptionError("That plan is not available.", code="price_not_found", status=404)
    check_amount(price)
    return price


def live_subscription(user_id: int) -> Subscription | None:
    return db.session.scalar(select(Subscription).where(
        Subscription.user_id == user_id, Subscription.status.in_(LIVE_STATUSES))
        .order_by(Subscription.id.desc()).limit(1))


def own_subscription(user: User, public_id: str) -> Subscription:
    """The subscription if it is ``user``'s (admins: anyone's); 404 otherwise."""
    row = db.session.scalar(select(Subscription).where(Subscription.public_id == public_id))
    if row is None or (row.user_id != user.id and not user.is_admin):
        raise _not_found()
    return row


def past_due_subscription(user_id: int) -> Subscription | None:
    return db.session.scalar(select(Subscription).where(
        Subscription.user_id == user_id, Subscription.status.in_(("past_due", "unpaid")))
        .limit(1))


# --- syncing with Stripe -------------------------------------------------------------------------

def _apply(sub: dict, *, source: str, fetched_at: datetime) -> Subscription | None:
    with transaction():
        row = subscription_sync.apply_subscription(sub, source=source, fetched_at=fetched_at)
        row_id = row.id if row is not None else None
    return db.session.get(Subscription, row_id, populate_existing=True) if row_id else None


def refresh(stripe_subscription_id: str, *, source: str) -> Subscription | None:
    """Fetch the subscription from Stripe and apply it."""
    sub = get_gateway().retrieve_subscription(stripe_subscription_id)
    return _apply(sub, source=source, fetched_at=utcnow())


def apply_paid_invoice(invoice: dict, *, source: str) -> Order | None:
    with transaction():
        order = apply_invoice(invoice, source=source)
        order_id = order.id if order is not None else None
    return db.session.get(Order, order_id, populate_existing=True) if order_id else None


def sync(user: User, *, force: bool = False) -> None:
    """Ask Stripe about the buyer's subscriptions and recent invoices (at most every
    ``SYNC_SECONDS`` per process): catches up on anything a lost webhook would have told us,
    e.g. a subscription started through Checkout or a renewal. Never raises."""
    if not user.stripe_customer_id:
        return
    force = force or _unknown_subscription(user.id)
    now = time.monotonic()
    with _synced_lock:
        if not force and _synced.get(user.stripe_customer_id, 0) > now:
            return
        _synced[user.stripe_customer_id] = now + SYNC_SECONDS
    gateway = get_gateway()
    try:
        subs = gateway.list_subscriptions(user.stripe_customer_id)
        received = utcnow()
        for sub in subs:
            _apply(sub, source="sync", fetched_at=received)
        if subs:
            for invoice in gateway.list_customer_invoices(user.stripe_customer_id, limit=12):
                if invoice.get("status") == "paid" and \
                        stripe_objects.subscription_of_invoice(invoice) and \
                        not _invoice_credited(invoice["id"]):
                    apply_paid_invoice(gateway.retrieve_invoice(invoice["id"]), source="sync")
        enforce_lifetime(user)
    except GatewayError as err:
        log.warning("subscription sync for user %s failed: %s", user.id, err.code)


def _unknown_subscription(user_id: int) -> bool:
    """An order names a subscription we have no row for (started through Checkout, its
    webhook not here yet): worth asking Stripe now rather than in a few seconds."""
    return db.session.scalar(
        select(Order.id).outerjoin(Subscription, Subscription.stripe_subscription_id
                                   == Order.stripe_subscription_id)
        .where(Order.user_id == user_id, Order.stripe_subscription_id.is_not(None),
               Subscription.id.is_(None)).limit(1)) is not None


def _invoice_credited(invoice_id: str) -> bool:
    """Credited, or paid without points (an upgrade's invoice): nothing left to apply."""
    from . import points
    return points.recorded(fulfilment.invoice_points_key(invoice_id)) or db.session.scalar(
        select(Order.id).where(Order.stripe_invoice_id == invoice_id,
                               Order.status.in_(COLLECTED)).limit(1)) is not None


def enforce_lifetime(user: User) -> None:
    """A Lifetime owner with a subscription still set to renew: stop it at the period's end
    (normally done when Lifetime is paid; this retries if Stripe was down then)."""
    if user.lifetime_since is None:
        return
    row = live_subscription(user.id)
    if row is None or row.cancel_at_period_end:
        return
    with transaction():
        subscription_sync.end_subscriptions_for_lifetime(user.id, reason=f"user-{user.public_id}")


# --- starting a subscription -----------------------------------------------------------------------

def _check_buyer(user: User, price: Price) -> tuple[str, Subscription | None]:
    """Refuse a second live subscription and Lifetime owners; returns (customer, an
    unpaid subscription to replace or resume)."""
    if user.lifetime_since is not None:
        raise SubscriptionError("You own the Lifetime plan: there is nothing to subscribe to.",
                                code="already_owned", status=409)
    existing = live_subscription(user.id)
    if existing is not None and existing.status != "incomplete":
        raise SubscriptionError("You already have a subscription. Change its plan instead.",
                                code="already_subscribed", status=409)
    try:
        return accounts.ensure_stripe_customer(user), existing
    except GatewayError as err:
        raise _unavailable(err, " Nothing was charged.") from err


def _unpaid_first_order(row: Subscription) -> Order | None:
    return db.session.scalar(select(Order).where(
        Order.stripe_subscription_id == row.stripe_subscription_id,
        Order.status.in_(PAYABLE)).order_by(Order.id).limit(1))


def _drop_unpaid(user: User, row: Subscription) -> None:
    """The buyer started another plan before paying the first: cancel the unpaid one (its
    open invoice is voided, so it can never be charged)."""
    try:
        cancel_now(row, by=f"buyer:{user.id}", reason="replaced")
    except SubscriptionError as err:
        if err.status != 404:
            raise


def subscribe(user: User, lookup_key: str, *, attempt: str) -> Order:
    """Start ``lookup_key``'s plan; returns the order for its first invoice (pay it next).

    ``attempt`` is a nonce from the form: a double-submitted form makes one subscription.
    """
    attempt = _attempt(attempt)
    price = plan_price(lookup_key)
    customer, unpaid = _check_buyer(user, price)
    if unpaid is not None:
        if unpaid.price_id == price.id:
            order = _unpaid_first_order(unpaid)
            if order is not None:
                return order
        _drop_unpaid(user, unpaid)
    stripe_price_id = price.stripe_price_id
    if stripe_price_id is None:  # plan_price refuses such a price; this tells mypy
        raise SubscriptionError("That plan is not available.", code="price_not_found", status=404)
    try:
        sub = get_gateway().create_subscription(
            customer=customer, price=stripe_price_id,
            metadata={"user_id": str(user.id), "lookup_key": price.lookup_key},
            idempotency_key=idempotency_key("subscription", user.public_id, price.lookup_key,
                                            attempt))
    except GatewayError as err:
        raise _unavailable(err, " Nothing was charged.") from err
    received = utcnow()
    invoice = sub.get("latest_invoice") or {}
    if not isinstance(invoice, dict) or not invoice.get("id"):
        raise SubscriptionError("Our payment provider did not return an invoice. Nothing was "
                                "charged.", code="invoice_missing", status=502)
    with transaction():
        subscription_sync.apply_subscription(sub, source="buyer", fetched_at=received)
        order_id = ensure_invoice_order(invoice, source="buyer")
    if order_id is None:
        raise SubscriptionError("That plan is not available.", code="price_not_found",
                                status=404)
    return db.session.get_one(Order, order_id, populate_existing=True)


def start_checkout(user: User, lookup_key: str, *,
                   return_urls: Callable[[str], tuple[str, str]]) -> tuple[Order, str]:
    """A Checkout Session in ``subscription`` mode and the order for its first invoice."""
    price = plan_price(lookup_key)
    customer, unpaid = _check_buyer(user, price)
    if unpaid is not None:
        _drop_unpaid(user, unpaid)
    public_id = new_order_id()
    try:
        session = create_checkout_session(customer, price,
                                          order_metadata(user, price, public_id),
                                          mode="subscription", return_urls=return_urls)
    except GatewayError as err:
        raise _unavailable(err, " Nothing was charged.") from err
    order = new_order(user, price, public_id, "subscription_invoice",
                      reason="subscription checkout started",
                      stripe_checkout_session_id=session["id"])
    return order, session["url"]


# --- changing, canceling, resuming --------------------------------------------------------------------

@dataclass
class Preview:
    """What a plan change costs, as Stripe computes it, and the signed ``token`` that lets the
    buyer confirm exactly that (the server's own ``proration_date``, never the form's)."""
    price: Price
    amount_due: int
    currency: str
    next_payment_at: datetime | None
    proration_date: int | None
    behavior: str
    lines: list[tuple[str, int]] = field(default_factory=list)
    token: str = ""

    @property
    def charged_now(self) -> bool:
        """An upgrade: ``amount_due`` is invoiced and charged on confirmation."""
        return self.behavior == UPGRADE_PRORATION

    @property
    def adjustment(self) -> int:
        """The proration part (negative: a credit): every line of an upgrade's invoice, all
        but the next period's line of a downgrade's next invoice."""
        if self.charged_now:
            return sum(amount for _, amount in self.lines)
        return sum(amount for _, amount in self.lines[:-1]) if len(self.lines) > 1 else 0


class PreviewStale(SubscriptionError):
    """The confirmed preview is not what Stripe would charge now (expired, tampered with, or
    prices / the plan changed): the buyer must review a fresh one."""

    def __init__(self, message: str = "Prices changed since you looked: please review the "
                                      "change again."):
        super().__init__(message, code="preview_stale", status=409)


def _stripe_sub(row: Subscription) -> dict:
    try:
        return get_gateway().retrieve_subscription(row.stripe_subscription_id)
    except GatewayError as err:
        raise _unavailable(err) from err


def _changeable(row: Subscription, price: Price) -> None:
    if row.status not in ("active", "trialing"):
        raise SubscriptionError("Only an active subscription can change plan.",
                                code="subscription_not_active", status=409)
    if row.cancel_at_period_end:
        raise SubscriptionError("Resume your subscription before changing its plan.",
                                code="subscription_canceling", status=409)
    if row.price_id == price.id:
        raise SubscriptionError("You are already on that plan.", code="same_plan", status=409)


def _behavior(row: Subscription, price: Price) -> str:
    """Upgrades are charged now, downgrades credited to the next invoice (same interval:
    the sandbox and our catalog only change plans within one)."""
    current = db.session.get(Price, row.price_id) if row.price_id else None
    if current is not None and price.unit_amount > current.unit_amount:
        return UPGRADE_PRORATION
    return DOWNGRADE_PRORATION


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_PREVIEW_SALT)


def _stripe_preview(row: Subscription, price: Price, item_id: str, behavior: str,
                    proration_date: int | None) -> dict:
    try:
        return get_gateway().preview_invoice(
            subscription=row.stripe_subscription_id, item_id=item_id,
            price=str(price.stripe_price_id), proration_behavior=behavior,
            proration_date=proration_date)
    except StripeRequestInvalid as err:
        if proration_date is not None:  # e.g. the period rolled over since the preview
            raise PreviewStale() from err
        raise _unavailable(err) from err
    except GatewayError as err:
        raise _unavailable(err) from err


def preview_change(row: Subscription, lookup_key: str) -> Preview:
    """Stripe's numbers for moving ``row`` to ``lookup_key`` now, with a signed token over
    them (subscription, from and to price, ``proration_date``, amount, issued-at)."""
    price = plan_price(lookup_key)
    _changeable(row, price)
    sub = _stripe_sub(row)
    item = sub["items"]["data"][0]
    behavior = _behavior(row, price)
    invoice = _stripe_preview(row, price, item["id"], behavior, None)
    lines = [(line.get("description") or "", int(line.get("amount") or 0))
             for line in invoice["lines"]["data"]]
    proration_starts = [line["period"]["start"] for line in invoice["lines"]["data"]
                        if stripe_objects.is_proration(line)]
    preview = Preview(price=price, amount_due=int(invoice.get("amount_due") or 0),
                      currency=invoice.get("currency") or price.currency,
                      next_payment_at=None if behavior == UPGRADE_PRORATION else stripe_objects.ts(
                          invoice.get("next_payment_attempt") or invoice.get("period_end")),
                      proration_date=min(proration_starts) if proration_starts else None,
                      behavior=behavior, lines=lines)
    preview.token = _serializer().dumps(_claims(row, price, preview, item["id"]))
    return preview


def _claims(row: Subscription, price: Price, preview: Preview, item_id: str) -> dict:
    return {"u": row.user_id, "s": row.public_id, "ss": row.stripe_subscription_id,
            "si": item_id, "from": row.price_id, "to": price.lookup_key,
            "sp": price.stripe_price_id, "ua": price.unit_amount, "b": preview.behavior,
            "d": preview.proration_date, "a": preview.amount_due, "c": preview.currency}


def _verified(row: Subscription, token: str | None) -> dict:
    if not token or len(token) > 2000:
        raise PreviewStale()
    try:
        claims = _serializer().loads(token, max_age=PREVIEW_MAX_AGE)
    except SignatureExpired as err:
        raise PreviewStale("That preview has expired: please review the change again.") from err
    except BadSignature as err:
        raise PreviewStale() from err
    if not isinstance(claims, dict) or claims.get("s") != row.public_id or \
            claims.get("u") != row.user_id or \
            claims.get("ss") != row.stripe_subscription_id:
        raise PreviewStale()
    return claims


@dataclass
class ChangeResult:
    subscription: Subscription
    #: an upgrade's invoice that is still to pay (declined, or 3-D Secure): pay it next
    unpaid_order: Order | None = None
    charged: int = 0
    currency: str = "usd"
    upgrade: bool = False


def change_plan(row: Subscription, token: str | None) -> ChangeResult:
    """Apply the previewed change, and only that: the token says which plan, which
    ``proration_date`` and what amount; Stripe is asked again with that date and must give
    the same amount, else :class:`PreviewStale` (nothing changes). Upgrades are invoiced and
    charged now (``always_invoice``); if that charge needs the buyer (3-D Secure, a decline)
    the result names the invoice's order to pay on the usual pay page. The token is the
    attempt: the same preview confirmed twice is one change at Stripe."""
    claims = _verified(row, token)
    attempt = hashlib.sha256(str(token).encode()).hexdigest()[:24]
    price = plan_price(str(claims.get("to") or ""))
    if (price.stripe_price_id, price.unit_amount) != (claims.get("sp"), claims.get("ua")) or \
            row.price_id != claims.get("from"):
        raise PreviewStale()
    _changeable(row, price)
    behavior = _behavior(row, price)
    if behavior != claims.get("b"):
        raise PreviewStale()
    sub = _stripe_sub(row)
    item = sub["items"]["data"][0]
    if item["id"] != claims.get("si"):
        raise PreviewStale()
    proration_date = claims.get("d")
    proration_date = int(proration_date) if isinstance(proration_date, int) else None
    again = _stripe_preview(row, price, item["id"], behavior, proration_date)
    if int(again.get("amount_due") or 0) != claims.get("a") or \
            (again.get("currency") or price.currency) != claims.get("c"):
        raise PreviewStale()
    params: dict = {"items": [{"id": item["id"], "price": price.stripe_price_id}],
                    "proration_behavior": behavior}
    if proration_date is not None:
        params["proration_date"] = proration_date
    stripe_id = row.stripe_subscription_id
    updated = _update(row, params, "change", price.lookup_key, attempt) or row
    result = ChangeResult(subscription=updated, currency=str(claims.get("c") or "usd"),
                          upgrade=behavior == UPGRADE_PRORATION)
    if behavior == UPGRADE_PRORATION:
        _settle_upgrade_invoice(stripe_id, _invoice_id(sub.get("latest_invoice")), result)
    return result


def _invoice_id(value) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def _settle_upgrade_invoice(stripe_id: str, invoice_before: str | None,
                            result: ChangeResult) -> None:
    """Record the upgrade's invoice now: paid -> its order (no points: points follow monthly
    invoices); still open -> its order, for the buyer to pay (3-D Secure or another card).
    No new invoice (nothing to prorate) -> nothing to do."""
    gateway = get_gateway()
    try:
        invoice_id = _invoice_id(gateway.retrieve_subscription(stripe_id).get("latest_invoice"))
        if not invoice_id or invoice_id == invoice_before:
            return
        invoice = gateway.retrieve_invoice(invoice_id)
    except GatewayError as err:  # the webhook or the billing page's sync will record it
        log.warning("upgrade invoice of %s not fetched: %s", stripe_id, err.code)
        return
    if invoice.get("billing_reason") != "subscription_update":
        return
    if invoice.get("status") == "paid":
        apply_paid_invoice(invoice, source="buyer")
        result.charged = int(invoice.get("amount_paid") or 0)
    elif invoice.get("status") == "open":
        with transaction():
            order_id = ensure_invoice_order(invoice, source="buyer")
        if order_id is not None:
            result.unpaid_order = db.session.get(Order, order_id, populate_existing=True)


def _update(row: Subscription, params: dict, *key_parts) -> Subscription:
    try:
        sub = get_gateway().update_subscription(
            row.stripe_subscription_id, params,
            idempotency_key=idempotency_key("subscription", row.stripe_subscription_id,
                                            *key_parts, payload=params))
    except GatewayError as err:
        raise _unavailable(err) from err
    return _apply(sub, source="buyer", fetched_at=utcnow()) or row


def cancel_at_period_end(row: Subscription, *, attempt: str) -> Subscription:
    if row.status not in ("active", "trialing", "past_due"):
        raise SubscriptionError("This subscription is not active.", code="subscription_not_active",
                                status=409)
    return _update(row, {"cancel_at_period_end": True}, "cancel", _attempt(attempt))


def resume(row: Subscription, *, attempt: str) -> Subscription:
    if not row.cancel_at_period_end or row.status not in ("active", "trialing", "past_due"):
        raise SubscriptionError("This subscription is not set to end.", code="not_canceling",
                                status=409)
    user = db.session.get(User, row.user_id)
    if user is not None and user.lifetime_since is not None:
        raise SubscriptionError("You own the Lifetime plan: this subscription is no longer "
                                "needed.", code="already_owned", status=409)
    return _update(row, {"cancel_at_period_end": False}, "resume", _attempt(attempt))


def cancel_now(row: Subscription, *, by: str, reason: str = "admin") -> Subscription:
    """End the subscription immediately (admins; also an unpaid one being replaced)."""
    if row.status not in LIVE_STATUSES:
        raise SubscriptionError("This subscription has already ended.", code="subscription_ended",
                                status=409)
    try:
        sub = get_gateway().cancel_subscription(
            row.stripe_subscription_id,
            idempotency_key=idempotency_key("subscription", row.stripe_subscription_id, "cancel-now"))
    except StripeNotFound:
        return refresh(row.stripe_subscription_id, source=by) or row
    except GatewayError as err:
        raise _unavailable(err) from err
    log.info("subscription %s canceled now by %s (%s)", row.stripe_subscription_id, by, reason)
    return _apply(sub, source=by, fetched_at=utcnow()) or row


def admin_cancel_now(admin: User, row: Subscription) -> Subscription:
    if not admin.is_admin:
        raise _not_found()
    return cancel_now(row, by=f"admin:{admin.email}")


# --- an overdue invoice ---------------------------------------------------------------------------

def open_invoice_order(row: Subscription) -> Order:
    """The order for the subscription's unpaid invoice (created on first need), to pay on the
    usual pay page with another card."""
    gateway = get_gateway()
    try:
        sub = gateway.retrieve_subscription(row.stripe_subscription_id)
        invoice_id = sub.get("latest_invoice")
        invoice_id = invoice_id.get("id") if isinstance(invoice_id, dict) else invoice_id
        invoice = gateway.retrieve_invoice(invoice_id) if invoice_id else None
    except GatewayError as err:
        raise _unavailable(err) from err
    if invoice is None or invoice.get("status") != "open":
        _apply(sub, source="buyer", fetched_at=utcnow())
        raise SubscriptionError("There is nothing to pay: your subscription is up to date.",
                                code="nothing_due", status=409)
    with transaction():
        order_id = ensure_invoice_order(invoice, source="buyer")
    if order_id is None:
        raise SubscriptionError("We couldn't find that invoice.", code="invoice_not_found",
                                status=404)
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
    if not user.stripe_customer_id:
        return []
    try:
        found = get_gateway().list_customer_invoices(user.stripe_customer_id, limit=24)
    except GatewayError as err:
        raise _unavailable(err) from err
    return [InvoiceRow(id=i["id"], number=i.get("number"), created=stripe_objects.ts(i.get("created")),
                       amount_due=int(i.get("amount_due") or 0),
                       amount_paid=int(i.get("amount_paid") or 0),
                       currency=i.get("currency") or "usd", status=i.get("status") or "",
                       hosted_invoice_url=i.get("hosted_invoice_url"))
            for i in found if i.get("status") != "draft"]


def upcoming_amount(row: Subscription) -> int | None:
    """The next renewal's amount as Stripe will bill it (pending prorations included)."""
    if row.status not in ("active", "trialing", "past_due") or row.cancel_at_period_end:
        return None
    try:
        invoice = get_gateway().preview_upcoming(row.stripe_subscription_id)
    except GatewayError as err:
        log.info("upcoming invoice unavailable: %s", err.code)
        return None
    return int(invoice.get("amount_due") or 0)


def portal_url(user: User, return_url: str) -> str:
    try:
        customer = accounts.ensure_stripe_customer(user)
        session = get_gateway().create_billing_portal_session(
            customer=customer, return_url=return_url,
            idempotency_key=idempotency_key("portal", user.public_id, secrets.token_urlsafe(8)))
    except GatewayError as err:
        raise _unavailable(err) from err
    return session["url"]


def new_attempt_nonce() -> str:
    return secrets.token_urlsafe(12)


_ATTEMPT = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _attempt(attempt: str | None) -> str:
    """A form's nonce goes into an Idempotency-Key: ASCII letters, digits, ``-`` and ``_``."""
    if not attempt or not _ATTEMPT.fullmatch(attempt):
        raise SubscriptionError("The form is missing its token; reload the page and try again.",
                                code="invalid_attempt", status=400)
    return attempt
