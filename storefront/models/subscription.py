"""A buyer's subscription to a plan, mirrored from Stripe.

Stripe is the source of truth for the subscription's state; this row is what we show and
what we enforce (one live subscription per buyer, the past-due banner). It is written only by
``services.subscription_sync.apply_subscription`` from a subscription object freshly fetched from
Stripe, so duplicate or out-of-order webhooks cannot leave it behind (see ``fetched_at``).
"""

from __future__ import annotations

import secrets
from datetime import datetime

from sqlalchemy import Boolean, ForeignKey, Index, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from .base import UTCDateTime, utcnow

#: Stripe's statuses that still bill (or are about to): a buyer may have one at a time
LIVE_STATUSES = ("incomplete", "trialing", "active", "past_due", "unpaid")
#: statuses that show the "pay your open invoice" banner
PAST_DUE_STATUSES = ("past_due", "unpaid")


def new_subscription_id() -> str:
    return "sbn_" + secrets.token_urlsafe(12)


class Subscription(Model):
    __tablename__ = "subscriptions"
    __table_args__ = (
        Index("ix_subscriptions_user_status", "user_id", "status"),
        Index("ix_subscriptions_pending_cancel", "pending_cancel_since"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    #: used in URLs (ownership is checked on every action)
    public_id: Mapped[str] = mapped_column(String(40), unique=True, default=new_subscription_id)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    #: our catalog price (found by the Stripe price id of the subscription's item)
    price_id: Mapped[int | None] = mapped_column(ForeignKey("prices.id"), nullable=True)
    stripe_subscription_id: Mapped[str] = mapped_column(String(255), unique=True)
    stripe_price_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    status: Mapped[str] = mapped_column(String(24), default="incomplete")
    cancel_at_period_end: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    current_period_start: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    current_period_end: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    canceled_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    latest_invoice_id: Mapped[str | None] = mapped_column(String(255), nullable=True)
    #: when Stripe's answer applied last *arrived*: an answer that arrived earlier is older news
    fetched_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: when the answer to our own last write arrived: a read sent before then may hold the state
    #: from before the write (its answer can still arrive later), so it does not overwrite it
    wrote_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: bumped by every locked update (the row lock, as for orders)
    lock_version: Mapped[int] = mapped_column(Integer, default=0)
    #: a Stripe write we owe this subscription, recorded in the transaction that made it due
    #: and sent after commit (``subscription_sync.finish_pending_cancels``), retried until it holds:
    #: what asked for it (``lifetime:<order>``), since when, tries so far and the last error
    pending_cancel: Mapped[str | None] = mapped_column(String(120), nullable=True)
    pending_cancel_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    pending_cancel_attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    pending_cancel_error: Mapped[str | None] = mapped_column(String(255), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    user = relationship("User")
    price = relationship("Price")

    @property
    def live(self) -> bool:
        return self.status in LIVE_STATUSES

    @property
    def past_due(self) -> bool:
        return self.status in PAST_DUE_STATUSES

    @property
    def plan_name(self) -> str:
        return self.price.product.name if self.price is not None else "Plan"
