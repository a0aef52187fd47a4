"""Points: an append-only ledger whose entries are unique by the fact they record."""

from __future__ import annotations

from sqlalchemy import func, select, update

from ..extensions import db
from ..models import PointsEntry, User
from ..models.base import insert_or_ignore, utcnow


def record(
    user_id: int,
    amount: int,
    *,
    key: str,
    reason: str,
    order_id: int | None = None,
    note: str | None = None,
    created_by_id: int | None = None,
) -> bool:
    """Add ``amount`` points (negative to take back) unless an entry with ``key`` exists.

    Runs inside the caller's transaction. Returns False when the fact was already recorded --
    by an earlier call, or by a concurrent one that committed first (the unique key decides).
    """
    if amount == 0:
        return False
    inserted = insert_or_ignore(
        db.session,
        PointsEntry.__table__,
        dict(
            user_id=user_id,
            amount=amount,
            key=key,
            reason=reason,
            order_id=order_id,
            note=note,
            created_by_id=created_by_id,
            created_at=utcnow(),
        ),
        "key",
    )
    if inserted:
        db.session.execute(update(User).where(User.id == user_id).values(points_balance=User.points_balance + amount))
    return inserted


def recorded(key: str) -> bool:
    return db.session.scalar(select(PointsEntry.id).where(PointsEntry.key == key)) is not None


def total_for_order(order_id: int) -> int:
    """Net points an order has granted so far (credits minus claw-backs)."""
    return (
        db.session.scalar(
            select(func.coalesce(func.sum(PointsEntry.amount), 0)).where(PointsEntry.order_id == order_id)
        )
        or 0
    )


def history(user_id: int, *, limit: int = 50, before_id: int | None = None) -> list[PointsEntry]:
    query = select(PointsEntry).where(PointsEntry.user_id == user_id)
    if before_id:
        query = query.where(PointsEntry.id < before_id)
    return list(db.session.scalars(query.order_by(PointsEntry.id.desc()).limit(limit)))
