from __future__ import annotations

import secrets
import time
from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import db
from .base import UTCDateTime, new_public_id, utcnow


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


def new_session_token() -> str:
    return secrets.token_urlsafe(24)


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Random, stable, never reused: safe in URLs and in Stripe idempotency keys even if
    # integer ids get reused after a database reset.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    #: the user's session generation: every session and remember-me cookie carries it, and a
    #: new value (log-out, password change, an admin's "end sessions") ends them all
    session_token: Mapped[str] = mapped_column(String(64), default=new_session_token)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: sum of the user's points ledger, kept in step by services.points in the same transaction
    points_balance: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: set when a Lifetime purchase is paid: Professional features forever
    lifetime_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: the subscription whose renewal failed, if any (for the site-wide banner): loaded with
    #: the user in the same query, so signed-in pages pay nothing extra for it
    past_due_subscription = relationship(
        "Subscription", viewonly=True, uselist=False, lazy="joined",
        primaryjoin="and_(User.id == foreign(Subscription.user_id), "
                    "Subscription.status.in_(('past_due', 'unpaid')))")

    @validates("email")
    def _normalize_email(self, _key: str, value: str) -> str:
        return normalize_email(value)

    def get_id(self) -> str:
        """What Flask-Login keeps in the session and the remember-me cookie:
        ``<id>:<session token>:<signed-in at, unix seconds>``; checked by
        ``services.accounts.user_for_session`` on every request."""
        return f"{self.id}:{self.session_token}:{int(time.time())}"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:  # pragma: no cover
        return f"<User {self.id} {self.email}>"
