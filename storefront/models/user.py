from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import Boolean, Integer, String, false
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates
from werkzeug.security import check_password_hash, generate_password_hash

from ..extensions import Model
from .base import UTCDateTime, new_public_id, utcnow


def normalize_email(email: str) -> str:
    return (email or "").strip().lower()


# Flask-Login ships no type information (pyproject: ignore_missing_imports), so its mixin is ``Any`` to mypy.
class User(UserMixin, Model):  # type: ignore[misc]
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Random, stable, never reused: safe in URLs and in Stripe idempotency keys even if
    # integer ids get reused after a database reset.
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(254), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    password_hash: Mapped[str] = mapped_column(String(255))
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    stripe_customer_id: Mapped[str | None] = mapped_column(String(255), unique=True, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: sum of the user's points ledger, kept in step by services.points in the same transaction
    points_balance: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    #: when the owner clicked the verification link sent to ``email`` (None: not yet; a new
    #: address is only ever set by clicking its confirmation link, so it stays verified)
    email_verified_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: set when a Lifetime purchase is paid: Professional features forever
    lifetime_since: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    #: the subscription whose renewal failed, if any (for the site-wide banner): loaded with
    #: the user in the same query, so signed-in pages pay nothing extra for it
    past_due_subscription = relationship(
        "Subscription",
        viewonly=True,
        uselist=False,
        lazy="joined",
        primaryjoin="and_(User.id == foreign(Subscription.user_id), Subscription.status.in_(('past_due', 'unpaid')))",
    )

    @validates("email")
    def _normalize_email(self, _key: str, value: str) -> str:
        return normalize_email(value)

    @property
    def email_verified(self) -> bool:
        """The owner has proven they read mail at ``email`` (what claiming orders and changing
        the email need; buying does not)."""
        return self.email_verified_at is not None

    @property
    def sign_in(self) -> tuple[str, int] | None:
        """This request's sign-in, (its ``UserSession.token``, signed in at, unix seconds): set
        by ``services.accounts.start_session`` and by the user loader; not a column."""
        return self.__dict__.get("_sign_in")

    @sign_in.setter
    def sign_in(self, value: tuple[str, int] | None) -> None:
        self.__dict__["_sign_in"] = value

    def get_id(self) -> str:
        """What Flask-Login keeps in the session and the remember-me cookie:
        ``<id>:<sign-in token>:<signed-in at, unix seconds>``; checked by
        ``services.accounts.user_for_session`` on every request."""
        if self.sign_in is None:
            raise RuntimeError("User.get_id() needs a sign-in: call accounts.start_session first")
        token, signed_in_at = self.sign_in
        return f"{self.id}:{token}:{signed_in_at}"

    def set_password(self, password: str) -> None:
        self.password_hash = generate_password_hash(password, method="scrypt")

    def check_password(self, password: str) -> bool:
        return check_password_hash(self.password_hash, password)

    def __repr__(self) -> str:  # pragma: no cover
        return f"<User {self.id} {self.email}>"
