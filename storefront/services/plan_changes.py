"""Changing a subscription's plan: Stripe's preview of the cost, signed so the buyer confirms
exactly what they saw, then the change and (for an upgrade) its invoice.

Upgrades invoice and charge the difference now (``always_invoice``); downgrades credit the next
invoice (``create_prorations``). See README: "Account: saved cards and subscriptions".
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from flask import current_app
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from ..extensions import db
from ..i18n import gettext as _
from ..models import Order, Price, Subscription
from ..stripe_gateway import GatewayError, StripeRequestInvalid, get_gateway
from . import stripe_objects
from .errors import Conflict, ServiceError, unavailable
from .invoices import ensure_invoice_order
from .subscriptions import apply_paid_invoice, plan_price, update_at_stripe
from .uow import read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: how proration works on a plan change: an upgrade invoices (and charges) the difference now,
#: a downgrade credits the next invoice
UPGRADE_PRORATION = "always_invoice"
DOWNGRADE_PRORATION = "create_prorations"
#: a plan-change preview can be confirmed for this long; then the buyer reviews it again
PREVIEW_MAX_AGE = 600
_PREVIEW_SALT = "storefront.subscriptions.plan-change-preview"


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


class PreviewStale(Conflict):
    """The confirmed preview is not what Stripe would charge now (expired, tampered with, or
    prices / the plan changed): the buyer must review a fresh one."""

    def __init__(self, message: str | None = None):
        message = message or _("Prices changed since you looked: please review the change again.")
        super().__init__(message, code="preview_stale", status=409)


def _stripe_sub(row: Subscription) -> dict[str, Any]:
    """The subscription at Stripe; the read of ours ends first (no transaction across it)."""
    read_then_release()
    try:
        return get_gateway().retrieve_subscription(row.stripe_subscription_id)
    except GatewayError as err:
        raise unavailable(err) from err


def _changeable(row: Subscription, price: Price) -> None:
    if row.status not in ("active", "trialing"):
        raise ServiceError(
            _("Only an active subscription can change plan."), code="subscription_not_active", status=409
        )
    if row.cancel_at_period_end:
        raise ServiceError(
            _("Resume your subscription before changing its plan."), code="subscription_canceling", status=409
        )
    if row.price_id == price.id:
        raise ServiceError(_("You are already on that plan."), code="same_plan", status=409)


def _behavior(row: Subscription, price: Price) -> str:
    """Upgrades are charged now, downgrades credited to the next invoice (same interval:
    the sandbox and our catalog only change plans within one)."""
    current = db.session.get(Price, row.price_id) if row.price_id else None
    if current is not None and price.unit_amount > current.unit_amount:
        return UPGRADE_PRORATION
    return DOWNGRADE_PRORATION


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=_PREVIEW_SALT)


def _stripe_preview(
    row: Subscription, price: Price, item_id: str, behavior: str, proration_date: int | None
) -> dict[str, Any]:
    try:
        return get_gateway().preview_invoice(
            subscription=row.stripe_subscription_id,
            item_id=item_id,
            price=str(price.stripe_price_id),
            proration_behavior=behavior,
            proration_date=proration_date,
        )
    except StripeRequestInvalid as err:
        if proration_date is not None:  # e.g. the period rolled over since the preview
            raise PreviewStale() from err
        raise unavailable(err) from err
    except GatewayError as err:
        raise unavailable(err) from err


def preview_change(row: Subscription, lookup_key: str) -> Preview:
    """Stripe's numbers for moving ``row`` to ``lookup_key`` now, with a signed token over
    them (subscription, from and to price, ``proration_date``, amount, issued-at)."""
    price = plan_price(lookup_key)
    _changeable(row, price)
    behavior = _behavior(row, price)
    sub = _stripe_sub(row)
    item = sub["items"]["data"][0]
    invoice = _stripe_preview(row, price, item["id"], behavior, None)
    lines = [(line.get("description") or "", int(line.get("amount") or 0)) for line in invoice["lines"]["data"]]
    proration_starts = [
        line["period"]["start"] for line in invoice["lines"]["data"] if stripe_objects.is_proration(line)
    ]
    preview = Preview(
        price=price,
        amount_due=int(invoice.get("amount_due") or 0),
        currency=invoice.get("currency") or price.currency,
        next_payment_at=None
        if behavior == UPGRADE_PRORATION
        else stripe_objects.ts(invoice.get("next_payment_attempt") or invoice.get("period_end")),
        proration_date=min(proration_starts) if proration_starts else None,
        behavior=behavior,
        lines=lines,
    )
    preview.token = _serializer().dumps(_claims(row, price, preview, item["id"]))
    return preview


def _claims(row: Subscription, price: Price, preview: Preview, item_id: str) -> dict[str, Any]:
    return {
        "u": row.user_id,
        "s": row.public_id,
        "ss": row.stripe_subscription_id,
        "si": item_id,
        "from": row.price_id,
        "to": price.lookup_key,
        "sp": price.stripe_price_id,
        "ua": price.unit_amount,
        "b": preview.behavior,
        "d": preview.proration_date,
        "a": preview.amount_due,
        "c": preview.currency,
    }


def _verified(row: Subscription, token: str | None) -> dict[str, Any]:
    if not token or len(token) > 2000:
        raise PreviewStale()
    try:
        claims = _serializer().loads(token, max_age=PREVIEW_MAX_AGE)
    except SignatureExpired as err:
        raise PreviewStale(_("That preview has expired: please review the change again.")) from err
    except BadSignature as err:
        raise PreviewStale() from err
    if (
        not isinstance(claims, dict)
        or claims.get("s") != row.public_id
        or claims.get("u") != row.user_id
        or claims.get("ss") != row.stripe_subscription_id
    ):
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
    if (price.stripe_price_id, price.unit_amount) != (claims.get("sp"), claims.get("ua")) or row.price_id != claims.get(
        "from"
    ):
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
    if int(again.get("amount_due") or 0) != claims.get("a") or (again.get("currency") or price.currency) != claims.get(
        "c"
    ):
        raise PreviewStale()
    params: dict[str, Any] = {
        "items": [{"id": item["id"], "price": price.stripe_price_id}],
        "proration_behavior": behavior,
    }
    if proration_date is not None:
        params["proration_date"] = proration_date
    stripe_id = row.stripe_subscription_id
    updated = update_at_stripe(row, params, "change", price.lookup_key, attempt) or row
    result = ChangeResult(
        subscription=updated, currency=str(claims.get("c") or "usd"), upgrade=behavior == UPGRADE_PRORATION
    )
    if behavior == UPGRADE_PRORATION:
        _settle_upgrade_invoice(stripe_id, _invoice_id(sub.get("latest_invoice")), result)
    return result


def _invoice_id(value: object) -> str | None:
    found = value.get("id") if isinstance(value, dict) else value
    return found if isinstance(found, str) else None


def _settle_upgrade_invoice(stripe_id: str, invoice_before: str | None, result: ChangeResult) -> None:
    """Record the upgrade's invoice now: paid -> its order (no points: points follow monthly
    invoices); still open -> its order, for the buyer to pay (3-D Secure or another card).
    No new invoice (nothing to prorate) -> nothing to do."""
    read_then_release()
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
        with unit_of_work():
            order_id = ensure_invoice_order(invoice, source="buyer")
        if order_id is not None:
            result.unpaid_order = db.session.get(Order, order_id, populate_existing=True)
