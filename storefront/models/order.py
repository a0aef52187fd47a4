"""Orders: one per purchase attempt, with a status that only moves forward.

An order copies the amount, currency and points from our catalog when it is created, so what
the buyer pays and gets never depends on the browser or on later catalog changes. Every status
change is recorded as an :class:`OrderTransition` naming its cause (a Stripe event id, a sync
from the status page, the buyer, an admin).
"""

from __future__ import annotations

import secrets
from datetime import datetime
from enum import StrEnum

from sqlalchemy import CheckConstraint, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from .base import UTCDateTime, utcnow


class OrderStatus(StrEnum):
    """Where an order stands. A ``str``: compares, hashes and stores as its value (``"paid"``)."""

    PENDING = "pending"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    PAID = "paid"
    FAILED = "failed"
    CANCELED = "canceled"
    EXPIRED = "expired"
    REFUNDED = "refunded"
    PARTIALLY_REFUNDED = "partially_refunded"
    DISPUTED = "disputed"


_S = OrderStatus  # short, for the tables below
#: every status, in the order the admin's filter lists them (and the CHECK constraint names them)
STATUSES: tuple[str, ...] = tuple(status.value for status in OrderStatus)
METHODS = ("payment_element", "saved_card", "checkout", "subscription_invoice")

#: where each status may go next; everything else is refused (orders only move forward).
#: ``failed`` is not a dead end: the buyer may retry the same payment with another card.
TRANSITIONS: dict[str, frozenset[str]] = {
    _S.PENDING: frozenset({_S.REQUIRES_ACTION, _S.PROCESSING, _S.PAID, _S.FAILED, _S.CANCELED, _S.EXPIRED}),
    _S.REQUIRES_ACTION: frozenset({_S.PROCESSING, _S.PAID, _S.FAILED, _S.CANCELED, _S.EXPIRED}),
    _S.FAILED: frozenset({_S.REQUIRES_ACTION, _S.PROCESSING, _S.PAID, _S.CANCELED, _S.EXPIRED}),
    _S.PROCESSING: frozenset({_S.PAID, _S.FAILED, _S.CANCELED}),
    _S.PAID: frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.DISPUTED}),
    _S.PARTIALLY_REFUNDED: frozenset({_S.REFUNDED, _S.DISPUTED}),
    _S.DISPUTED: frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED}),
    _S.CANCELED: frozenset(),
    _S.EXPIRED: frozenset(),
    _S.REFUNDED: frozenset(),
}

# --- the groups the code asks about (each defined here only) ------------------------------------
#: the buyer can (still, or again) pay: the pay page and a saved-card retry accept these
PAYABLE = frozenset({_S.PENDING, _S.REQUIRES_ACTION, _S.FAILED})
#: not paid yet and Stripe may still move it (the status page syncs these; ``failed`` too, since
#: the buyer may retry with another card); an unpaid subscription invoice is one of these
SYNCABLE = PAYABLE | {_S.PROCESSING}
#: the buyer has an answer: the status page stops polling
SETTLED = frozenset({_S.PAID, _S.FAILED, _S.CANCELED, _S.EXPIRED, _S.REFUNDED, _S.PARTIALLY_REFUNDED, _S.DISPUTED})
#: money was received (refunds are counted separately)
COLLECTED = frozenset({_S.PAID, _S.PARTIALLY_REFUNDED, _S.REFUNDED, _S.DISPUTED})
#: Stripe can refund it (a disputed charge cannot be refunded: Stripe refuses)
REFUNDABLE = frozenset({_S.PAID, _S.PARTIALLY_REFUNDED})
#: some or all of the money went back
REFUNDED = frozenset({_S.PARTIALLY_REFUNDED, _S.REFUNDED})
#: nowhere left to go
TERMINAL = frozenset(status for status, following in TRANSITIONS.items() if not following)


def new_order_id() -> str:
    """Public order id: 128 random bits, URL-safe (not guessable, unlike the row id)."""
    return "ord_" + secrets.token_urlsafe(16)


class Order(Model):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("amount > 0", name="amount_positive"),
        CheckConstraint("amount_refunded >= 0 and amount_refunded <= amount", name="refund_within_amount"),
        CheckConstraint("status in ('" + "', '".join(STATUSES) + "')", name="status"),
        Index("ix_orders_user_created", "user_id", "created_at"),
        Index("ix_orders_status_created", "status", "created_at"),
        # the admin purchases table: newest first, by product, and revenue by payment day
        Index("ix_orders_created_id", "created_at", "id"),
        Index("ix_orders_lookup_key_created", "lookup_key", "created_at"),
        Index("ix_orders_paid_at", "paid_at"),
        # covers the purchases totals (count, collected, refunded per currency) by status
        Index("ix_orders_status_totals", "status", "currency", "amount", "amount_refunded"),
        Index("ix_orders_buyer_email", "buyer_email"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_order_id)
    #: None for a guest order (API checkout with no session) until an account with its
    #: ``buyer_email``, verified, claims it (services/guest_orders.py)
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    #: the address Stripe Checkout collected for a guest order (None for an account's own order)
    buyer_email: Mapped[str | None] = mapped_column(String(254), nullable=True)
    price_id: Mapped[int] = mapped_column(ForeignKey("prices.id"))
    # what was bought, copied from the catalog at purchase time
    lookup_key: Mapped[str] = mapped_column(String(64))
    product_name: Mapped[str] = mapped_column(String(120))
    points: Mapped[int] = mapped_column(Integer, default=0)
    entitlement: Mapped[str | None] = mapped_column(String(32), nullable=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    method: Mapped[str] = mapped_column(String(24))
    status: Mapped[str] = mapped_column(String(24), default=OrderStatus.PENDING.value)
    amount_refunded: Mapped[int] = mapped_column(Integer, default=0)
    failure_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    failure_message: Mapped[str | None] = mapped_column(Text, nullable=True)
    # Stripe's side of it
    stripe_payment_intent_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    stripe_checkout_session_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    stripe_invoice_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    stripe_subscription_id: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    stripe_charge_id: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    #: ``created`` of the newest Stripe event applied: an older event changes nothing
    last_event_created: Mapped[int | None] = mapped_column(Integer, nullable=True)
    #: when the status page last asked Stripe (one fetch per order every few seconds at most)
    synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: bumped by every locked update (the lock itself: see services.orders.lock_order)
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)
    paid_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)

    user = relationship("User")
    price = relationship("Price")
    transitions: Mapped[list[OrderTransition]] = relationship(back_populates="order", order_by="OrderTransition.id")

    @property
    def settled(self) -> bool:
        return self.status in SETTLED

    def can_move_to(self, status: str) -> bool:
        return status in TRANSITIONS[self.status]


class OrderTransition(Model):
    """One step in an order's history: from, to, and what caused it."""

    __tablename__ = "order_transitions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    from_status: Mapped[str | None] = mapped_column(String(24), nullable=True)
    to_status: Mapped[str] = mapped_column(String(24))
    #: ``event:evt_…``, ``sync``, ``buyer``, ``admin:<email>``, ``checkout`` …
    source: Mapped[str] = mapped_column(String(120))
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    order: Mapped[Order] = relationship(back_populates="transitions")
