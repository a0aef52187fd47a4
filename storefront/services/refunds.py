"""Refunds from the admin order page: exact, confirmed, idempotent, confirmed by Stripe.

1. The admin types an amount in major units (``12.50``); :func:`parse_amount` turns it into
   integer minor units through :func:`storefront.money.parse_money` (exact; ``1,50`` is refused,
   never read as 150).
2. :func:`review_refund` checks it against what is left and shows the question to confirm --
   "Refund $1.50 of $400.00 to Visa ending 4242?" (the card from the order's charge, asked of
   Stripe before any transaction) -- with a signed token (10 minutes) carrying the amount,
   reason, note, admin and a nonce generated here. Nothing is written or sent yet.
3. :func:`confirm_refund` verifies the token and calls :func:`request_refund`, which takes the
   order's lock, checks the amount against what is left -- ``amount - amount_refunded`` minus
   refunds still in flight (asked of Stripe, not yet confirmed by ``charge.refunded``) -- and
   writes a :class:`Refund` row whose unique idempotency key derives from the order, the nonce
   (``[A-Za-z0-9_-]{16,64}`` only: it is sent as the Idempotency-Key) and the amount. The same
   confirmation submitted twice finds that row (or loses the insert race on the unique key) and
   refunds nothing more.
4. Stripe is asked with that same key, so even two requests that both reach Stripe make one
   refund. The order does not change here: it becomes ``partially_refunded`` / ``refunded``
   (points clawed back in proportion, see :func:`.fulfilment.apply_refund`) when Stripe confirms
   with ``charge.refunded``, or when :func:`sync_order` fetches the charge.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from .. import money
from ..extensions import db
from ..models import Order, User
from ..models.base import utcnow
from ..models.order import REFUNDABLE
from ..models.refund import LIVE, REASONS, Refund
from ..stripe_gateway import GatewayError, StripeRequestInvalid, get_gateway, idempotency_key
from . import fulfilment
from .errors import ServiceError
from .orders import lock_order
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: a refund's nonce goes into Stripe's Idempotency-Key: generated here, checked strictly
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")
#: how long the confirmation page of a refund can be confirmed
CONFIRM_MAX_AGE = 600
_CONFIRM_SALT = "storefront.refunds.confirm"


class RefundError(ServiceError):
    """The refund cannot go ahead; the message is for the admin."""

    code = "refund_refused"


@dataclass
class RefundResult:
    refund: Refund
    duplicate: bool  # the same form was already submitted: nothing new was asked of Stripe


def parse_amount(text: str | None, currency: str) -> int:
    """``"12.50"`` (major units) -> ``1250`` minor units, exactly (:func:`money.parse_money`:
    ``1,50`` or ``1_000`` are refused, never guessed); anything else -> :class:`RefundError`."""
    try:
        return money.parse_money(text, currency)
    except money.MoneyError as err:
        raise RefundError(err.message) from err


def in_flight(order: Order) -> int:
    """Refunds we asked for that Stripe has not confirmed to us yet (approximation: our live
    refunds beyond what the order records as refunded)."""
    ours = (
        db.session.scalar(
            select(func.coalesce(func.sum(Refund.amount), 0)).where(
                Refund.order_id == order.id, Refund.status.in_(LIVE)
            )
        )
        or 0
    )
    return max(0, ours - order.amount_refunded)


def refundable_amount(order: Order) -> int:
    if order.status not in REFUNDABLE or not order.stripe_payment_intent_id:
        return 0
    return max(0, order.amount - order.amount_refunded - in_flight(order))


@dataclass
class RefundReview:
    """What the admin is asked to confirm ("Refund $1.50 of $400.00 to Visa ending 4242?") and
    the signed token that carries exactly that to the confirming POST."""

    order: Order
    amount: int
    reason: str | None
    note: str | None
    destination: str
    token: str

    @property
    def question(self) -> str:
        return (
            f"Refund {_fmt(self.amount, self.order.currency)} of "
            f"{_fmt(self.order.amount, self.order.currency)} to {self.destination}?"
        )


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_CONFIRM_SALT)


def _check_reason(reason: str | None) -> str | None:
    if reason and reason not in REASONS:
        raise RefundError("Choose one of Stripe's refund reasons.")
    return reason or None


def review_refund(
    order: Order, *, amount_text: str | None, reason: str | None, note: str | None, admin: User
) -> RefundReview:
    """Step 1 of a refund: the exact amount, checked against what is left, and where the money
    goes (the card of the order's charge, asked of Stripe before any transaction). Nothing is
    written and nothing is sent to Stripe."""
    reason = _check_reason(reason)
    amount = parse_amount(amount_text, order.currency)
    left = refundable_amount(order)
    if order.status not in REFUNDABLE or not order.stripe_payment_intent_id:
        raise RefundError(f"A {order.status.replace('_', ' ')} order cannot be refunded.")
    if amount > left:
        raise RefundError(
            f"At most {_fmt(left, order.currency)} can be refunded (refunds already made or in flight are taken off)."
        )
    note = (note or "").strip()[:500] or None
    token = _serializer().dumps(
        {
            "o": order.public_id,
            "a": amount,
            "c": order.currency,
            "r": reason,
            "n": note,
            "by": admin.id,
            "k": secrets.token_urlsafe(18),
        }
    )
    return RefundReview(
        order=order, amount=amount, reason=reason, note=note, destination=destination(order), token=token
    )


def destination(order: Order) -> str:
    """ "Visa ending 4242" from the order's charge at Stripe (we store no card details), or
    "the original payment method" when Stripe does not say (or does not answer)."""
    gateway = get_gateway()
    read_then_release()  # what we read of the order stays loaded; Stripe next
    try:
        charge_id = order.stripe_charge_id
        if not charge_id and order.stripe_payment_intent_id:
            pi = gateway.retrieve_payment_intent(order.stripe_payment_intent_id)
            latest = pi.get("latest_charge")
            charge_id = latest.get("id") if isinstance(latest, dict) else latest
        charge = gateway.retrieve_charge(charge_id) if charge_id else {}
    except GatewayError as err:
        log.info("card of order %s not known: %s", order.public_id, err.code)
        charge = {}
    card = (charge.get("payment_method_details") or {}).get("card") or {}
    brand, last4 = str(card.get("brand") or ""), str(card.get("last4") or "")
    if brand and re.fullmatch(r"[0-9]{4}", last4):
        names = {
            "amex": "American Express",
            "diners": "Diners Club",
            "jcb": "JCB",
            "unionpay": "UnionPay",
            "mastercard": "Mastercard",
        }
        return f"{names.get(brand, brand.title())} ending {last4}"
    return "the original payment method"


def confirm_refund(order: Order, token: str | None, *, admin: User) -> RefundResult:
    """Step 2: only what the admin saw is refunded -- amount, reason and the nonce come from
    the signed token, never from re-parsed form fields. The same page confirmed twice makes
    one refund (its nonce is the idempotency key)."""
    if not token or len(token) > 4000:
        raise RefundError("The confirmation is missing; start the refund again.")
    try:
        claims = _serializer().loads(token, max_age=CONFIRM_MAX_AGE)
    except SignatureExpired as err:
        raise RefundError("That confirmation has expired; start the refund again.") from err
    except BadSignature as err:
        raise RefundError("That confirmation is not valid; start the refund again.") from err
    if (
        not isinstance(claims, dict)
        or claims.get("o") != order.public_id
        or claims.get("by") != admin.id
        or claims.get("c") != order.currency
        or not isinstance(claims.get("a"), int)
    ):
        raise RefundError("That confirmation is not valid; start the refund again.")
    return request_refund(
        order.id,
        amount=claims["a"],
        reason=claims.get("r"),
        nonce=str(claims.get("k") or ""),
        admin=admin,
        note=claims.get("n"),
    )


def request_refund(
    order_id: int, *, amount: int, reason: str | None, nonce: str, admin: User, note: str | None = None
) -> RefundResult:
    """Record the refund (once per nonce) and ask Stripe. ``amount`` is the confirmed one."""
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise RefundError("The form is missing its token; reload the page and try again.")
    reason = _check_reason(reason)
    if not isinstance(amount, int) or amount <= 0:
        raise RefundError("The amount must be more than zero.")
    with unit_of_work():
        order = lock_order(order_id)
        key = idempotency_key("refund", order.public_id, nonce, amount)
        existing = db.session.scalar(select(Refund).where(Refund.idempotency_key == key))
        if existing is None:
            if order.status not in REFUNDABLE or not order.stripe_payment_intent_id:
                raise RefundError(f"A {order.status.replace('_', ' ')} order cannot be refunded.")
            left = max(0, order.amount - order.amount_refunded - in_flight(order))
            if amount > left:
                raise RefundError(
                    f"At most {_fmt(left, order.currency)} can be refunded "
                    "(refunds already made or in flight are taken off)."
                )
            existing = Refund(
                order_id=order.id,
                amount=amount,
                currency=order.currency,
                reason=reason or None,
                note=(note or "").strip()[:500] or None,
                status="requested",
                idempotency_key=key,
                created_by_id=admin.id,
            )
            db.session.add(existing)
            try:
                db.session.flush()
            except IntegrityError:  # the same form, submitted at the same moment
                db.session.rollback()
                return RefundResult(
                    db.session.scalars(select(Refund).where(Refund.idempotency_key == key)).one(), duplicate=True
                )
            duplicate = False
        else:
            duplicate = True
        refund_id = existing.id
    refund = db.session.get_one(Refund, refund_id)
    if duplicate and refund.stripe_refund_id:
        return RefundResult(refund, duplicate=True)
    _ask_stripe(refund)
    return RefundResult(db.session.get_one(Refund, refund_id), duplicate=duplicate)


def _ask_stripe(refund: Refund) -> None:
    order: Order = refund.order
    payment_intent = order.stripe_payment_intent_id or ""  # refundable orders have one
    metadata = {"order_id": order.public_id, "refund_row": str(refund.id)}
    read_then_release()  # what we read stays loaded; Stripe next
    try:
        answer = get_gateway().create_refund(
            payment_intent=payment_intent,
            amount=refund.amount,
            reason=refund.reason,
            idempotency_key=refund.idempotency_key,
            metadata=metadata,
        )
    except StripeRequestInvalid as err:  # Stripe said no: nothing was refunded
        with unit_of_work():
            row = db.session.get_one(Refund, refund.id)
            row.status, row.error = "failed", (err.detail or err.user_message)[:2000]
        raise RefundError(f"Stripe refused the refund: {err.detail or err.user_message}") from err
    except GatewayError as err:  # no answer: it may or may not exist; the same key is safe
        with unit_of_work():
            row = db.session.get_one(Refund, refund.id)
            row.error = f"{err.code}: no answer from Stripe yet"
        raise RefundError(
            "Stripe did not answer. The refund is kept as requested; submitting "
            "the same form again, or “Sync with Stripe”, is safe."
        ) from err
    with unit_of_work():
        row = db.session.get_one(Refund, refund.id)
        row.stripe_refund_id = answer["id"]
        row.status = answer.get("status") or "pending"
        row.error = None


def sync_order(order_id: int) -> Order:
    """Ask Stripe about an order now: its PaymentIntent (or Checkout Session), its charge
    (refunds), and our refund rows -- each applied through :mod:`.fulfilment`."""
    gateway = get_gateway()
    order = db.session.get_one(Order, order_id)
    pi_id, session_id = order.stripe_payment_intent_id, order.stripe_checkout_session_id
    read_then_release()
    if pi_id:
        pi = gateway.retrieve_payment_intent(pi_id)
        with unit_of_work():
            fulfilment.apply_payment_intent(pi, source="sync")
    elif session_id:
        session = gateway.retrieve_checkout_session(session_id)
        with unit_of_work():
            fulfilment.apply_checkout_session(session, source="sync")
    order = db.session.get_one(Order, order_id, populate_existing=True)
    charge_id = order.stripe_charge_id
    read_then_release()
    if charge_id:
        charge = gateway.retrieve_charge(charge_id)
        with unit_of_work():
            if charge.get("amount_refunded"):
                fulfilment.apply_refund(charge, source="sync")
        stripe_refunds = list(gateway.list_refunds(charge=charge_id))
        sync_refund_rows(order, stripe_refunds)
    return db.session.get_one(Order, order_id, populate_existing=True)


def sync_refund_rows(order: Order, stripe_refunds: list[dict[str, Any]]) -> None:
    """Bring our refund rows in line with Stripe's refunds for the order's charge."""
    by_row = {(r.get("metadata") or {}).get("refund_row"): r for r in stripe_refunds}
    by_id = {r["id"]: r for r in stripe_refunds}
    with unit_of_work():
        for row in db.session.scalars(select(Refund).where(Refund.order_id == order.id)):
            found = by_id.get(row.stripe_refund_id) or by_row.get(str(row.id))
            if found is not None:
                row.stripe_refund_id = found["id"]
                row.status = found.get("status") or row.status
                row.error = found.get("failure_reason") or None
            elif row.status == "requested" and row.created_at < utcnow() - timedelta(minutes=1):
                row.status = "failed"  # Stripe never made it: no longer in flight
                row.error = "Stripe has no such refund"


def for_order(order_id: int) -> list[Refund]:
    return list(db.session.scalars(select(Refund).where(Refund.order_id == order_id).order_by(Refund.id)))


def _fmt(amount: int, currency: str) -> str:
    return money.format_or_raw(amount, currency)
