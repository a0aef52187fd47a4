"""Refunds an admin asked Stripe for, from the order page.

A row is written *before* Stripe is asked (status ``requested``), unique by its idempotency
key (order + form nonce + amount), so a double-submitted form inserts once and calls Stripe with
the same key. The order itself changes only when Stripe confirms (``charge.refunded`` or a sync
that fetches the charge): these rows are the request log and what is still "in flight".
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from .base import UTCDateTime, utcnow

#: Stripe's refund reasons (``reason`` on ``POST /v1/refunds``)
REASONS = ("requested_by_customer", "duplicate", "fraudulent")
#: ``requested``: sent (or being sent) to Stripe, answer unknown; then Stripe's own statuses
STATUSES = ("requested", "pending", "requires_action", "succeeded", "failed", "canceled")
#: statuses whose amount is (or may be) leaving the merchant's balance
LIVE = ("requested", "pending", "requires_action", "succeeded")


class Refund(Model):
    __tablename__ = "refunds"
    __table_args__ = (CheckConstraint("amount > 0", name="amount_positive"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    reason: Mapped[str | None] = mapped_column(String(32), nullable=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    status: Mapped[str] = mapped_column(String(24), default="requested")
    idempotency_key: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_refund_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    order = relationship("Order")
    created_by = relationship("User")
