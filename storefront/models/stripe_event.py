"""Every webhook event Stripe sent us, stored by its Stripe id before it is processed.

``next_attempt_at`` is set exactly while the event awaits processing: when a worker (or the
sweeper) may take it next. A worker's claim moves it a lease ahead; a failure sets the backoff;
processing, or giving up after the last attempt, clears it (given up: unprocessed, an error,
no next attempt).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, utcnow

_FAILED = text("processed_at IS NULL AND next_attempt_at IS NULL")


class StripeEvent(Model):
    __tablename__ = "stripe_events"
    __table_args__ = (
        Index("ix_stripe_events_received", "received_at"),
        Index("ix_stripe_events_next_attempt", "next_attempt_at"),
        # the given-up ones (the admin's count of failed events and its filter): few rows
        Index("ix_stripe_events_failed", "id", sqlite_where=_FAILED, postgresql_where=_FAILED),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    stripe_id: Mapped[str] = mapped_column(String(255), unique=True)
    type: Mapped[str] = mapped_column(String(100), index=True)
    object_id: Mapped[str | None] = mapped_column(String(255), index=True, nullable=True)
    created: Mapped[int] = mapped_column(Integer)
    livemode: Mapped[bool] = mapped_column(default=False)
    payload: Mapped[str] = mapped_column(Text)
    received_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
