"""The catalog: a Product (what the buyer gets) with its Price (what it costs).

Amounts are integer minor units with an ISO currency; formatting happens in templates.
A Price row keeps its ``lookup_key`` for life; when the amount changes the sync points
it at the new Stripe price (the old one is archived in Stripe). Orders (next issue) copy
amount and currency at purchase time, so history never depends on today's price.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Boolean, CheckConstraint, ForeignKey, Integer, String, Text, true
from sqlalchemy.orm import Mapped, mapped_column, relationship

from ..extensions import Model
from .base import UTCDateTime, utcnow

KINDS = ("subscription", "one_time")


def describe_grants(kind: str, points: int, entitlement: str | None) -> str:
    """What a product gives the buyer, in plain words."""
    if kind == "subscription":
        return f"{points:,} points each paid month"
    if entitlement:
        return f"{entitlement.title()} features forever + {points:,} points"
    return f"{points:,} points"


CATEGORIES = ("plan", "points")


class Product(Model):
    __tablename__ = "products"
    __table_args__ = (
        CheckConstraint("kind in ('subscription', 'one_time')", name="kind"),
        CheckConstraint("category in ('plan', 'points')", name="category"),
        CheckConstraint("points >= 0", name="points_non_negative"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    key: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(120))
    description: Mapped[str] = mapped_column(Text, default="")
    category: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(16))
    points: Mapped[int] = mapped_column(Integer, default=0)
    # e.g. "professional" for the Lifetime plan: features granted forever.
    entitlement: Mapped[str | None] = mapped_column(String(32), nullable=True)
    stripe_product_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    prices: Mapped[list[Price]] = relationship(back_populates="product", order_by="Price.id")

    @property
    def grants(self) -> str:
        """What the buyer gets, in plain words."""
        return describe_grants(self.kind, self.points, self.entitlement)


class Price(Model):
    __tablename__ = "prices"
    __table_args__ = (
        CheckConstraint("unit_amount > 0", name="unit_amount_positive"),
        CheckConstraint("interval is null or interval in ('day', 'week', 'month', 'year')", name="interval"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    product_id: Mapped[int] = mapped_column(ForeignKey("products.id"), index=True)
    lookup_key: Mapped[str] = mapped_column(String(64), unique=True)
    unit_amount: Mapped[int] = mapped_column(Integer)
    currency: Mapped[str] = mapped_column(String(3))
    interval: Mapped[str | None] = mapped_column(String(8), nullable=True)
    stripe_price_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)

    product: Mapped[Product] = relationship(back_populates="prices")

    @property
    def kind(self) -> str:
        return "subscription" if self.interval else "one_time"
