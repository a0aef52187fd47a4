"""Reconciliation: repair what a lost webhook left behind.

:func:`reconcile` lists the last N days of Stripe objects -- PaymentIntents, Checkout Sessions,
refunds (through their charges), disputes, and invoices -- and hands each to the same
:mod:`.fulfilment` (or :mod:`.invoices`) function a webhook
would, one object per transaction (``uow.unit_of_work``), with the source ``reconcile``.
Fulfilment is idempotent and only moves orders forward, so a run changes only what is behind
Stripe, and a second run changes nothing. What changed is returned (order, from -> to).

No database transaction is open while Stripe is asked (each read is committed before the next
page or object is fetched). A run ends by sending the Stripe writes still owed after an earlier
failure (``subscription_sync.finish_pending_cancels``: a Lifetime purchase's subscription cancel).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from sqlalchemy import or_, select

from ..extensions import db
from ..models import Order
from ..stripe_gateway import GatewayError, StripeGateway, get_gateway
from . import fulfilment, invoices, orders, points, subscription_sync
from .errors import ServiceError
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)
SOURCE = "reconcile"


@dataclass
class Change:
    order: str  # the order's public id
    stripe_id: str  # the Stripe object that moved it
    from_status: str | None
    to_status: str
    refunded: tuple[int, int] = (0, 0)
    points: tuple[int, int] = (0, 0)

    def __str__(self) -> str:
        text = f"{self.order}: {self.from_status or '(new)'} -> {self.to_status} ({self.stripe_id})"
        if self.refunded[0] != self.refunded[1]:
            text += f", refunded {self.refunded[0]} -> {self.refunded[1]}"
        if self.points[0] != self.points[1]:
            text += f", points {self.points[0]:+} -> {self.points[1]:+}"
        return text


@dataclass
class Report:
    days: int
    checked: dict[str, int] = field(default_factory=dict)
    changes: list[Change] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    #: owed subscription cancels sent now and holding / still owed (Stripe failed again)
    cancels_sent: int = 0
    cancels_pending: int = 0

    def summary(self) -> str:
        seen = ", ".join(f"{n} {kind}" for kind, n in self.checked.items()) or "nothing"
        owed = ""
        if self.cancels_sent or self.cancels_pending:
            owed = f", {self.cancels_sent} owed subscription cancel(s) sent" + (
                f", {self.cancels_pending} still owed" if self.cancels_pending else ""
            )
        return (
            f"Checked the last {self.days} day(s): {seen}; {len(self.changes)} change(s)"
            + owed
            + (f", {len(self.errors)} error(s)" if self.errors else "")
            + "."
        )


class ReconcileError(ServiceError):
    """The run cannot go ahead (days out of range, Stripe could not be listed)."""

    code = "reconcile_refused"


def _snapshot(order: Order) -> tuple[str, int, int]:
    return order.status, order.amount_refunded, points.total_for_order(order.id)


def _find(
    *,
    payment_intent: str | None = None,
    session: str | None = None,
    charge: str | None = None,
    invoice: str | None = None,
    public_id: str | None = None,
) -> int | None:
    conditions = []
    for column, value in (
        (Order.stripe_payment_intent_id, payment_intent),
        (Order.stripe_checkout_session_id, session),
        (Order.stripe_charge_id, charge),
        (Order.stripe_invoice_id, invoice),
        (Order.public_id, public_id),
    ):
        if value:
            conditions.append(column == value)
    if not conditions:
        return None
    found = db.session.scalar(select(Order.id).where(or_(*conditions)).limit(1))
    read_then_release()  # no read stays open while the next object is fetched from Stripe
    return found


def _apply(report: Report, stripe_id: str, order_id: int | None, apply: Callable[[], Order | None]) -> None:
    """Apply one Stripe object in its own transaction, noting what changed."""
    try:
        with unit_of_work():
            before: tuple[str | None, int, int] = _snapshot(orders.lock_order(order_id)) if order_id else (None, 0, 0)
            order = apply()
            if order is None:
                return
            db.session.flush()
            after = _snapshot(order)
            if after != before:
                report.changes.append(
                    Change(
                        order.public_id, stripe_id, before[0], after[0], (before[1], after[1]), (before[2], after[2])
                    )
                )
    except Exception as err:  # one bad object must not stop the run (logged with its traceback)
        log.exception("reconcile: %s failed", stripe_id)
        report.errors.append(f"{stripe_id}: {type(err).__name__}: {err}")


def _id(value: Any) -> str | None:
    return value.get("id") if isinstance(value, dict) else value


def reconcile(days: int = 3, *, now: int | None = None) -> Report:
    if days < 1 or days > 90:
        raise ReconcileError("Reconcile between 1 and 90 days.")
    gateway = get_gateway()
    since = int(now if now is not None else time.time()) - days * 86400
    report = Report(days)
    read_then_release()
    try:
        _payment_intents(report, gateway, since)
        _checkout_sessions(report, gateway, since)
        _invoices(report, gateway, since)
        _refunds(report, gateway, since)
        _disputes(report, gateway, since)
    except GatewayError as err:
        raise ReconcileError(f"Stripe could not be listed: {err.detail or err.user_message}") from err
    report.cancels_sent, report.cancels_pending = subscription_sync.finish_pending_cancels()
    return report


def _payment_intents(report: Report, gateway: StripeGateway, since: int) -> None:
    n = 0
    for pi in gateway.list_payment_intents(created_gte=since):
        n += 1
        order_id = _find(payment_intent=pi["id"], public_id=(pi.get("metadata") or {}).get("order_id"))
        if order_id:
            _apply(report, pi["id"], order_id, partial(fulfilment.apply_payment_intent, pi, source=SOURCE))
    report.checked["PaymentIntents"] = n


def _checkout_sessions(report: Report, gateway: StripeGateway, since: int) -> None:
    n = 0
    for session in gateway.list_checkout_sessions(created_gte=since):
        n += 1
        if session.get("mode") != "payment":
            continue  # subscription sessions are the subscriptions code's (invoices below)
        order_id = _find(session=session["id"], public_id=session.get("client_reference_id"))
        if order_id:
            _apply(report, session["id"], order_id, partial(fulfilment.apply_checkout_session, session, source=SOURCE))
    report.checked["Checkout Sessions"] = n


def _invoices(report: Report, gateway: StripeGateway, since: int) -> None:
    n = 0
    for invoice in gateway.list_invoices(created_gte=since):
        n += 1
        order_id = _find(invoice=invoice["id"])
        _apply(report, invoice["id"], order_id, partial(invoices.apply_invoice, invoice, source=SOURCE))
    report.checked["invoices"] = n


def _refunds(report: Report, gateway: StripeGateway, since: int) -> None:
    charges: list[str] = []
    for refund in gateway.list_refunds(created_gte=since):
        charge = _id(refund.get("charge"))
        if charge and charge not in charges:
            charges.append(charge)
    for charge_id in charges:
        charge_object = gateway.retrieve_charge(charge_id)
        order_id = _find(charge=charge_id, payment_intent=_id(charge_object.get("payment_intent")))
        if order_id:
            _apply(report, charge_id, order_id, partial(fulfilment.apply_refund, charge_object, source=SOURCE))
    report.checked["refunded charges"] = len(charges)


def _disputes(report: Report, gateway: StripeGateway, since: int) -> None:
    n = 0
    for dispute in gateway.list_disputes(created_gte=since):
        n += 1
        order_id = _find(charge=_id(dispute.get("charge")), payment_intent=_id(dispute.get("payment_intent")))
        if order_id:
            _apply(report, dispute["id"], order_id, partial(fulfilment.apply_dispute, dispute, source=SOURCE))
    report.checked["disputes"] = n
