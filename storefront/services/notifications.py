"""Transactional mails (issue 13): what a buyer is told by email when money moves or a payment
needs them.

* **receipt** -- an order is paid (a one-time purchase, a plan's first invoice, a renewal):
  product, amount, points, date, a link to the order;
* **refund** -- Stripe confirmed a refund: how much came back and the points taken back;
* **dispute** -- a dispute froze the order's points;
* **action_needed** -- a payment waits for 3-D Secure or failed (link: the order's pay page), or
  a renewal failed (``invoice.payment_failed``; link: the billing page, whose "Pay now" pays the
  open invoice with another card);
* **renewal_ending** -- a subscription set to cancel at period end ends within
  :data:`REMIND_BEFORE` (the hourly job ``renewal_reminders``, :func:`remind_renewals_ending`).

Every function here runs *inside* the caller's unit of work -- the one that makes the change --
and only owes the mail (:func:`.mail.queue_mail`: an outbox row, sent by the queue after the
commit). Exactly once comes from two places: the call sits where the change happens once (an
order moves to ``paid`` in :func:`.fulfilment.advance` only once, under its row lock, whoever
applies it: webhook, status poll, reconcile), and the outbox is unique on (recipient, kind,
about), so a second caller owes nothing more. The ``about`` of each mail names the object and,
where a mail is owed once per state, the state:

* ``order:<public_id>`` (receipt), ``order:<public_id>:<requires_action|failed>`` (action needed),
* ``order:<public_id>:refunded:<total refunded>`` (refund: one per refund, since every refund
  raises the charge's refunded total; two refunds first seen together make one mail for both),
* ``dispute:<dp_id>``, ``invoice:<in_id>:payment_failed``,
* ``subscription:<public_id>:ends:<period end>``.

Contexts hold what the templates show, formatted here (amounts through :mod:`storefront.money`,
dates in UTC): names, amounts, dates and links -- never a card number or a client secret.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from babel.dates import format_date, format_datetime
from flask import current_app
from sqlalchemy import select

from .. import money
from ..extensions import db
from ..i18n import N_
from ..models import Order, Price, Product, Subscription, User
from ..models.base import utcnow
from ..models.order import COLLECTED, OrderStatus
from .mail import Drop, queue_mail, register_kind, store_link
from .stripe_objects import StripeObject, plan_price_ids, stripe_id
from .uow import unit_of_work

log = logging.getLogger(__name__)

RECEIPT = "receipt"
REFUND = "refund"
DISPUTE = "dispute"
ACTION_NEEDED = "action_needed"
RENEWAL_ENDING = "renewal_ending"

#: how long before its end a subscription set to cancel gets its reminder
REMIND_BEFORE = timedelta(days=3)
#: statuses of a subscription that still runs to its period's end
_RUNNING = ("active", "trialing", "past_due")
#: the billing reason of a renewal's invoice
_RENEWAL = "subscription_cycle"


# --- at send time: a mail asking the buyer to act is dropped once there is nothing left to do ---------------


def _still_needed(context: dict[str, Any]) -> dict[str, Any]:
    """An "action needed" mail still owed when the worker sends it (a queue backlog, an SMTP
    retry an hour later): the order is still in the state the mail is about, the renewal's
    invoice still unpaid here."""
    if context.get("reason") == "renewal_failed":
        paid = db.session.scalar(
            select(Order.id).where(Order.stripe_invoice_id == context.get("invoice_id"), Order.status.in_(COLLECTED))
        )
        if paid is not None:
            raise Drop("the invoice has been paid since")
        return {}
    status = db.session.scalar(select(Order.status).where(Order.public_id == context.get("order_id")))
    if status != context.get("state"):
        raise Drop(f"the order is {status} now")
    return {}


def _still_ending(context: dict[str, Any]) -> dict[str, Any]:
    """A reminder still owed: the subscription is still set to end at that period's end."""
    row = db.session.execute(
        select(Subscription.cancel_at_period_end, Subscription.status, Subscription.current_period_end).where(
            Subscription.public_id == context.get("subscription_id")
        )
    ).first()
    if row is None or not row.cancel_at_period_end or row.status not in _RUNNING:
        raise Drop("the subscription is no longer set to end")
    if row.current_period_end is None or int(row.current_period_end.timestamp()) != context.get("ends_ts"):
        raise Drop("the subscription's period has changed")
    return {}


register_kind(RECEIPT, N_("Your receipt for {product}"), "receipt")
register_kind(REFUND, N_("Refund of {refunded} for {product}"), "refund")
register_kind(DISPUTE, N_("Your payment for {product} is disputed"), "dispute")
register_kind(ACTION_NEEDED, N_("Action needed: {headline}"), "action_needed", _still_needed)
register_kind(RENEWAL_ENDING, N_("Your {plan} subscription ends on {ends_on}"), "renewal_ending", _still_ending)


def _email(user_id: int | None) -> str | None:
    if user_id is None:
        return None
    return db.session.scalar(select(User.email).where(User.id == user_id))


def _recipient(order: Order) -> str | None:
    """Who hears about ``order``: its account, or the address Checkout collected for a guest."""
    return _email(order.user_id) or order.buyer_email


def _day(when: datetime | None) -> str:
    """``29 November 2026`` (UTC)."""
    return format_date((when or utcnow()).astimezone(UTC).date(), format="long", locale="en")


def _moment(when: datetime) -> str:
    """``29 November 2026, 14:05 UTC``."""
    return format_datetime(when, "d MMMM y, HH:mm 'UTC'", tzinfo=UTC, locale="en")


def _order_facts(order: Order) -> dict[str, Any]:
    """What every mail about an order shows."""
    return {
        "order_id": order.public_id,
        "product": order.product_name,
        "amount": money.format_or_raw(order.amount, order.currency),
        "subscription": order.method == "subscription_invoice",
        "order_url": _order_url(order),
    }


def _order_url(order: Order) -> str:
    """The account's order page; an unclaimed guest order's page is the public status page of
    its Checkout Session (its id is the buyer's capability, as in the API)."""
    if order.user_id is None and order.stripe_checkout_session_id:
        return store_link("guest.status", session_id=order.stripe_checkout_session_id)
    return store_link("orders.show", public_id=order.public_id)


# --- orders: paid, or waiting for the buyer ----------------------------------------------------------


def order_moved(order: Order) -> None:
    """``order`` has just moved (:func:`.fulfilment.advance`, in its transaction): paid owes a
    receipt; waiting for 3-D Secure or failed owes an "action needed" mail."""
    if order.status == OrderStatus.PAID:
        _receipt(order)
    elif order.status in (OrderStatus.REQUIRES_ACTION, OrderStatus.FAILED):
        _order_needs_action(order)


def _receipt(order: Order) -> None:
    to = _recipient(order)
    if to is None:
        return
    paid_at = order.paid_at or utcnow()
    context = _order_facts(order) | {
        # a guest order nobody has claimed yet: how to get what it grants
        "claim": order.user_id is None,
        "signup_url": store_link("auth.signup"),
        "points": order.points,
        "points_text": f"{order.points:,}",
        "entitlement": f"{order.entitlement.title()} features forever" if order.entitlement else None,
        "paid_on": _day(paid_at),
        "paid_at": paid_at.isoformat(),
        "invoice_id": order.stripe_invoice_id,
    }
    queue_mail(RECEIPT, to=to, about=f"order:{order.public_id}", context=context, user_id=order.user_id)


def _order_needs_action(order: Order) -> None:
    to = _email(order.user_id)
    if to is None:
        return
    authenticate = order.status == OrderStatus.REQUIRES_ACTION
    context = _order_facts(order) | {
        "reason": "authenticate" if authenticate else "failed",
        "state": order.status,
        "headline": "confirm your payment" if authenticate else "your payment did not go through",
        "message": None if authenticate else order.failure_message,
        "link": store_link("pay.page", public_id=order.public_id),
        "link_label": "Finish authentication" if authenticate else "Try another card",
    }
    queue_mail(  # delayed: the buyer is usually still on the pay page (MAIL_ACTION_DELAY_SECONDS)
        ACTION_NEEDED,
        to=to,
        about=f"order:{order.public_id}:{order.status}",
        context=context,
        user_id=order.user_id,
        delay=float(current_app.config["MAIL_ACTION_DELAY_SECONDS"]),
    )


# --- refunds and disputes ----------------------------------------------------------------------------


def refund_issued(order: Order, *, refunded_now: int, points_taken: int) -> None:
    """Stripe confirmed a refund of ``order`` (:func:`.fulfilment.apply_refund`): its total
    refunded is now ``order.amount_refunded``, of which ``refunded_now`` is new."""
    to = _recipient(order)
    if to is None or refunded_now <= 0:
        return
    context = _order_facts(order) | {
        "refunded": money.format_or_raw(refunded_now, order.currency),
        "refunded_total": money.format_or_raw(order.amount_refunded, order.currency),
        "full": order.amount_refunded >= order.amount,
        "points_taken": points_taken,
        "points_taken_text": f"{points_taken:,}",
        "refunded_on": _day(utcnow()),
    }
    about = f"order:{order.public_id}:refunded:{order.amount_refunded}"
    queue_mail(REFUND, to=to, about=about, context=context, user_id=order.user_id)


def dispute_opened(order: Order, dispute: StripeObject, *, points_frozen: int) -> None:
    """A dispute moved ``order`` to ``disputed`` and froze ``points_frozen`` of its points."""
    to = _recipient(order)
    if to is None:
        return
    context = _order_facts(order) | {
        "points_frozen": points_frozen,
        "points_frozen_text": f"{points_frozen:,}",
        "disputed_on": _day(utcnow()),
    }
    about = f"dispute:{dispute.get('id') or order.public_id}"
    queue_mail(DISPUTE, to=to, about=about, context=context, user_id=order.user_id)


# --- a renewal that failed -----------------------------------------------------------------------------


def invoice_unpaid(invoice: StripeObject) -> None:
    """A subscription invoice Stripe has not been paid for (:func:`.invoices.apply_invoice`):
    a renewal whose payment was attempted and failed owes the buyer an "action needed" mail
    pointing at the billing page (its past-due banner pays the invoice with another card).
    A plan's first invoice and a plan change are paid on our pay page: their order tells."""
    if invoice.get("status") != "open" or not invoice.get("attempted") or invoice.get("billing_reason") != _RENEWAL:
        return
    user = db.session.execute(
        select(User.id, User.email).where(User.stripe_customer_id == stripe_id(invoice.get("customer")))
    ).first()
    if user is None:
        return
    plan = _plan_name(invoice)
    amount = int(invoice.get("amount_due") or 0)
    context = {
        "reason": "renewal_failed",
        "invoice_id": invoice["id"],
        "headline": f"the renewal of your {plan} subscription failed",
        "plan": plan,
        "product": plan,
        "amount": money.format_or_raw(amount, invoice.get("currency") or "usd"),
        "subscription": True,
        "link": store_link("billing.index"),
        "link_label": "Pay the open invoice",
    }
    about = f"invoice:{invoice['id']}:payment_failed"
    queue_mail(ACTION_NEEDED, to=user.email, about=about, context=context, user_id=user.id)


def _plan_name(invoice: StripeObject) -> str:
    for stripe_price in plan_price_ids(invoice):
        query = select(Product.name).join(Price, Price.product_id == Product.id)
        name = db.session.scalar(query.where(Price.stripe_price_id == stripe_price))
        if name:
            return name
    return "subscription"


# --- subscriptions about to end (the hourly job) ----------------------------------------------------------


def remind_renewals_ending(now: datetime | None = None) -> str:
    """Owe a reminder to every buyer whose subscription is set to cancel at the end of a
    period that ends within :data:`REMIND_BEFORE` of ``now`` -- once per (subscription, period
    end), however often this runs. A Lifetime owner is not reminded: the store ended that
    subscription itself and it can't be resumed. Returns a summary for the job's run."""
    now = now or utcnow()
    with unit_of_work():
        rows = db.session.execute(
            select(Subscription.public_id, Subscription.current_period_end, User.id, User.email, Product.name)
            .join(User, User.id == Subscription.user_id)
            .outerjoin(Price, Price.id == Subscription.price_id)
            .outerjoin(Product, Product.id == Price.product_id)
            .where(
                Subscription.cancel_at_period_end.is_(True),
                Subscription.status.in_(_RUNNING),
                Subscription.current_period_end > now,
                Subscription.current_period_end <= now + REMIND_BEFORE,
                User.lifetime_since.is_(None),
            )
            .order_by(Subscription.current_period_end)
        ).all()
        queued = sum(
            _reminder(public_id, ends_at, user_id, email, plan)
            for public_id, ends_at, user_id, email, plan in rows
            if ends_at
        )
    return f"{queued} reminder(s) queued ({len(rows)} subscription(s) ending within {REMIND_BEFORE.days} days)."


def _reminder(public_id: str, ends_at: datetime, user_id: int, email: str, plan: str | None) -> bool:
    context = {
        "subscription_id": public_id,
        "plan": plan or "subscription",
        "ends_on": _day(ends_at),
        "ends_at": ends_at.isoformat(),
        "ends_ts": int(ends_at.timestamp()),
        "ends_at_text": _moment(ends_at),
        "link": store_link("billing.index"),
    }
    about = f"subscription:{public_id}:ends:{context['ends_ts']}"
    return queue_mail(RENEWAL_ENDING, to=email, about=about, context=context, user_id=user_id)
