"""The points ledger: append-only entries; a user's balance is their sum.

Each entry has a unique ``key`` naming the fact it records (``order:ord_…:purchase``,
``invoice:in_…``). Crediting the same fact twice violates that constraint, which is what
makes fulfilment exactly-once even when two workers race. ``users.points_balance`` is kept
in step in the same transaction, so the header shows the balance without summing.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from .base import UTCDateTime, utcnow

REASONS = ("purchase", "subscription", "refund", "dispute", "adjustment", "lifetime")


class PointsEntry(Model):
    __tablename__ = "points_entries"
    __table_args__ = (Index("ix_points_entries_user_created", "user_id", "created_at"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    order_id: Mapped[int | None] = mapped_column(ForeignKey("orders.id"), index=True, nullable=True)
    amount: Mapped[int] = mapped_column(Integer)
    reason: Mapped[str] = mapped_column(String(24))
    key: Mapped[str] = mapped_column(String(200), unique=True)
    note: Mapped[str | None] = mapped_column(Text, nullable=True)
    #: the admin who made a manual adjustment
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    order = relationship("Order")
