"""Buyers for the admin: a searchable list, one buyer's story, manual points adjustments."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Row, func, or_, select
from sqlalchemy.orm import aliased

from ..extensions import db
from ..models import Order, PointsEntry, Subscription, User
from . import points
from .errors import ServiceError
from .uow import unit_of_work

PAGE_SIZE = 50
MAX_ADJUSTMENT = 1_000_000
#: a whole number of points, ASCII digits only, "1,000" grouping allowed ("1_000", "١٢" are not)
POINTS = re.compile(r"[+-]?(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]{1,9})")
#: the form's nonce goes into the ledger key: the same alphabet as an idempotency key
NONCE = re.compile(r"[A-Za-z0-9_-]{16,64}")


class AdjustmentError(ServiceError):
    """The adjustment cannot be recorded; the message is for the admin."""

    code = "invalid_adjustment"


@dataclass
class BuyersPage:
    rows: list[dict[str, Any]]  # {"row": the user's columns, "orders": how many}
    next_before: int | None


def buyers_page(q: str | None = None, before: int | None = None, size: int = PAGE_SIZE) -> BuyersPage:
    """Newest accounts first (keyset on id); each with balance and number of orders.
    Two queries: the page of users, then the order counts for just those users."""
    query = select(
        User.id,
        User.public_id,
        User.email,
        User.name,
        User.points_balance,
        User.is_admin,
        User.created_at,
        User.lifetime_since,
    )
    if q:
        term = q.strip().lower()
        escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        query = query.where(
            or_(User.email.like(f"%{escaped}%", escape="\\"), func.lower(User.name).like(f"%{escaped}%", escape="\\"))
        )
    if before:
        query = query.where(User.id < before)
    rows = db.session.execute(query.order_by(User.id.desc()).limit(size + 1)).all()
    more = len(rows) > size
    rows = rows[:size]
    counts = (
        dict(
            db.session.execute(
                select(Order.user_id, func.count(Order.id))
                .where(Order.user_id.in_([r.id for r in rows]))
                .group_by(Order.user_id)
            ).all()
        )
        if rows
        else {}
    )
    out = [{"row": r, "orders": counts.get(r.id, 0)} for r in rows]
    return BuyersPage(out, rows[-1].id if more and rows else None)


def buyer_by_public_id(public_id: str) -> User | None:
    return db.session.scalar(select(User).where(User.public_id == public_id))


def recent_orders(user_id: int, limit: int = 50) -> list[Order]:
    return list(
        db.session.scalars(
            select(Order)
            .where(Order.user_id == user_id)
            .order_by(Order.created_at.desc(), Order.id.desc())
            .limit(limit)
        )
    )


def ledger(
    user_id: int, *, limit: int = 100, before: int | None = None
) -> Sequence[Row[PointsEntry, str | None, str | None, str | None]]:
    """Entries newest first, with the admin who made an adjustment and the order's public id."""
    admin = aliased(User)
    query = (
        select(
            PointsEntry,
            admin.name.label("admin_name"),
            admin.email.label("admin_email"),
            Order.public_id.label("order_public_id"),
        )
        .outerjoin(admin, admin.id == PointsEntry.created_by_id)
        .outerjoin(Order, Order.id == PointsEntry.order_id)
        .where(PointsEntry.user_id == user_id)
    )
    if before:
        query = query.where(PointsEntry.id < before)
    return db.session.execute(query.order_by(PointsEntry.id.desc()).limit(limit)).all()


def subscription_of(user_id: int) -> list[Subscription]:
    """The buyer's last ten subscriptions, newest first."""
    return list(
        db.session.scalars(
            select(Subscription).where(Subscription.user_id == user_id).order_by(Subscription.id.desc()).limit(10)
        )
    )


def parse_points(text: str | None) -> int:
    raw = (text or "").strip()
    if len(raw) > 20 or not POINTS.fullmatch(raw):
        raise AdjustmentError("Points must be a whole number in digits 0-9, e.g. 500 or -200.")
    value = int(raw.replace(",", ""))
    if value == 0:
        raise AdjustmentError("An adjustment of zero points changes nothing.")
    if abs(value) > MAX_ADJUSTMENT:
        raise AdjustmentError(f"At most {MAX_ADJUSTMENT:,} points at a time.")
    return value


def adjust_points(user: User, *, amount_text: str | None, reason: str | None, nonce: str, admin: User) -> bool:
    """Add (or take) points by hand. The reason is required and recorded with the admin; the
    form's nonce makes the ledger key unique, so a double-submitted form records once.
    Returns False if this form was already recorded."""
    amount = parse_points(amount_text)
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise AdjustmentError("Say why (at least a few words): the buyer sees it in their points history.")
    if not isinstance(nonce, str) or not NONCE.fullmatch(nonce):
        raise AdjustmentError("The form is missing its token; reload the page and try again.")
    with unit_of_work():
        return points.record(
            user.id,
            amount,
            key=f"adjust:{user.public_id}:{nonce}",
            reason="adjustment",
            note=reason[:500],
            created_by_id=admin.id,
        )
