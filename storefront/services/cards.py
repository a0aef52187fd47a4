"""Saved cards: listed from Stripe, added with a SetupIntent, defaulted, removed.

Nothing about a card is stored in our database. The list (brand, last 4, expiry and which one
is the default) is kept in the shared cache (:data:`CARD_LISTS`, storefront/cache.py) for
:data:`CACHE_SECONDS` per buyer so the cards page doesn't ask Stripe on every view; every change
made here drops that buyer's entry on every worker at once. Every action first checks the card
belongs to the buyer's Stripe customer (:func:`own_card`): another buyer's card id answers "not
found", exactly like an unknown id.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import select

from ..cache import Shared
from ..extensions import db
from ..models import Subscription, User
from ..models.subscription import LIVE_STATUSES
from ..stripe_gateway import GatewayError, StripeNotFound, get_gateway, idempotency_key
from . import accounts
from .errors import NotFound, unavailable
from .uow import read_then_release

log = logging.getLogger(__name__)

CACHE_SECONDS = 30
#: Stripe ids as the browser may send them (whole-string matches: no trailing newline)
#: Stripe-generated ids only: a test token such as ``pm_card_visa`` is never a saved card, and
#: retrieving one makes Stripe create a new PaymentMethod (a 404 must leave nothing behind)
PAYMENT_METHOD_ID = re.compile(r"pm_[A-Za-z0-9]{1,250}")
SETUP_INTENT_ID = re.compile(r"seti_[A-Za-z0-9_]{1,250}")

#: a buyer's cards (list[Card]) by Stripe customer id: key ``cards:<cus_id>`` in the shared cache
CARD_LISTS = Shared("cards", CACHE_SECONDS)


def _not_found() -> NotFound:
    return NotFound("We couldn't find that card.", code="card_not_found")


@dataclass(frozen=True)
class Card:
    id: str
    brand: str
    last4: str
    exp_month: int
    exp_year: int
    is_default: bool

    @property
    def expired(self) -> bool:
        today = date.today()
        return (self.exp_year, self.exp_month) < (today.year, today.month)

    @property
    def label(self) -> str:
        return f"{self.brand.title()} ending in {self.last4}"


def _card(pm: dict[str, Any], default_id: str | None) -> Card:
    card = pm.get("card") or {}
    return Card(
        id=pm["id"],
        brand=card.get("brand") or "card",
        last4=card.get("last4") or "????",
        exp_month=int(card.get("exp_month") or 0),
        exp_year=int(card.get("exp_year") or 0),
        is_default=pm["id"] == default_id,
    )


def invalidate(user: User) -> None:
    """The buyer's cards changed: every worker asks Stripe on its next view."""
    if user.stripe_customer_id:
        CARD_LISTS.invalidate(user.stripe_customer_id)


def list_cards(user: User, *, fresh: bool = False) -> list[Card]:
    """The buyer's cards at Stripe, default first. Raises :class:`.errors.ServiceError` if Stripe is down."""
    if not user.stripe_customer_id:
        return []
    cached = CARD_LISTS.read(user.stripe_customer_id)
    if cached.value is not None and not fresh:
        return list(cached.value)
    gateway = get_gateway()
    read_then_release()
    try:
        customer = gateway.retrieve_customer(user.stripe_customer_id)
        methods = gateway.list_cards(user.stripe_customer_id)
    except GatewayError as err:
        raise unavailable(err) from err
    default_id = (customer.get("invoice_settings") or {}).get("default_payment_method")
    default_id = default_id.get("id") if isinstance(default_id, dict) else default_id
    cards = sorted((_card(pm, default_id) for pm in methods), key=lambda c: not c.is_default)
    CARD_LISTS.store(user.stripe_customer_id, cards, cached)
    return cards


def own_card(user: User, payment_method_id: str) -> dict[str, Any]:
    """The payment method, if it is one of ``user``'s cards; else :class:`NotFound`."""
    if (
        not isinstance(payment_method_id, str)
        or not PAYMENT_METHOD_ID.fullmatch(payment_method_id)
        or not user.stripe_customer_id
    ):
        raise _not_found()
    read_then_release()
    try:
        pm = get_gateway().retrieve_payment_method(payment_method_id)
    except GatewayError as err:
        if err.http_status == 404 or err.code in ("not_found", "invalid_request"):
            raise _not_found() from err
        raise unavailable(err) from err
    customer = pm.get("customer")
    customer = customer.get("id") if isinstance(customer, dict) else customer
    if customer != user.stripe_customer_id:
        raise _not_found()
    return pm


# --- adding a card -------------------------------------------------------------------------------


def start_setup(user: User, reuse: str | None = None) -> dict[str, Any]:
    """A SetupIntent for the buyer's customer; the page confirms it with the Payment Element
    (3-D Secure if the card asks). Returns the SetupIntent (its ``client_secret`` for the page).

    ``reuse`` is the SetupIntent this browser was last given: while it is the buyer's and still
    waits for a card it is handed out again, so reloading the page mints nothing at Stripe."""
    gateway = get_gateway()
    user_id, public_id = user.id, user.public_id
    try:
        customer = accounts.ensure_stripe_customer(user)  # returns with no transaction open
        if reuse and SETUP_INTENT_ID.fullmatch(reuse):
            try:
                si = gateway.retrieve_setup_intent(reuse)
            except StripeNotFound:
                si = None
            if si is not None and _customer_id(si) == customer and si.get("status") == "requires_payment_method":
                return si
        return gateway.create_setup_intent(
            customer=customer,
            metadata={"user_id": str(user_id)},
            idempotency_key=idempotency_key("setup-intent", public_id, secrets.token_urlsafe(12)),
        )
    except GatewayError as err:
        raise unavailable(err) from err


def _customer_id(stripe_object: dict[str, Any]) -> str | None:
    customer = stripe_object.get("customer")
    return customer.get("id") if isinstance(customer, dict) else customer


def finish_setup(user: User, setup_intent_id: str) -> tuple[str, Card | None]:
    """Stripe.js came back from ``confirmSetup``: read the SetupIntent (it must be the buyer's)
    and report ``(status, card)``. The buyer's first card becomes their default."""
    if not isinstance(setup_intent_id, str) or not SETUP_INTENT_ID.fullmatch(setup_intent_id):
        raise _not_found()
    gateway = get_gateway()
    read_then_release()
    try:
        si = gateway.retrieve_setup_intent(setup_intent_id)
    except GatewayError as err:
        raise _not_found() if err.http_status == 404 else unavailable(err) from err
    if not user.stripe_customer_id or _customer_id(si) != user.stripe_customer_id:
        raise _not_found()
    invalidate(user)
    if si.get("status") != "succeeded":
        return si.get("status") or "unknown", None
    pm_id = si.get("payment_method")
    pm_id = pm_id.get("id") if isinstance(pm_id, dict) else pm_id
    cards = list_cards(user, fresh=True)
    if pm_id and not any(c.is_default for c in cards):
        set_default(user, pm_id)
        cards = list_cards(user, fresh=True)
    return "succeeded", next((c for c in cards if c.id == pm_id), None)


# --- default and removal -------------------------------------------------------------------------


def set_default(user: User, payment_method_id: str) -> None:
    """The buyer's default card: ``invoice_settings.default_payment_method`` on their customer,
    and on their live subscription, so renewals charge the card they chose."""
    own_card(user, payment_method_id)
    customer = user.stripe_customer_id
    if customer is None:  # own_card has refused it already; this tells mypy
        raise _not_found()
    live = db.session.scalars(
        select(Subscription.stripe_subscription_id).where(
            Subscription.user_id == user.id, Subscription.status.in_(LIVE_STATUSES)
        )
    ).all()
    read_then_release()
    gateway = get_gateway()
    nonce = secrets.token_urlsafe(8)  # the SDK's own retries reuse it; a later click is new
    try:
        gateway.set_default_payment_method(
            customer,
            payment_method_id,
            idempotency_key=idempotency_key("customer", customer, "default", payment_method_id, nonce),
        )
        for sub_id in live:
            gateway.update_subscription(
                sub_id,
                {"default_payment_method": payment_method_id},
                idempotency_key=idempotency_key("subscription", sub_id, "default", payment_method_id, nonce),
            )
    except GatewayError as err:
        raise unavailable(err) from err
    finally:
        invalidate(user)


def remove(user: User, payment_method_id: str) -> None:
    own_card(user, payment_method_id)
    try:
        get_gateway().detach_payment_method(
            payment_method_id, idempotency_key=idempotency_key("detach", payment_method_id)
        )
    except GatewayError as err:
        raise unavailable(err) from err
    finally:
        invalidate(user)
