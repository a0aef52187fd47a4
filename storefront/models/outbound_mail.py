"""The outbox of mail (issue 13): one row per mail the store owes someone, written in the same
transaction as what caused it, sent by the queue after that commit (``jobs.send_mail``).

Unique on (recipient, kind, about): a webhook delivered three times, or a view retried, owes one
receipt. ``next_attempt_at`` is set while the mail waits to be sent: a worker's claim moves it a
lease ahead, a failure sets the backoff; sending, or giving up after the last attempt, clears it
(given up: ``sent_at`` empty, ``last_error`` set, no next attempt).

``context`` is the JSON the templates are rendered from at send time: ids, names, amounts, dates
-- never a card number, a client secret or a password. One-time links (password reset, address
verification) are signed at send time from the ids it holds, so the outbox keeps no token.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, utcnow


class OutboundMail(Model):
    __tablename__ = "outbound_mails"
    __table_args__ = (
        UniqueConstraint("recipient", "kind", "about", name="uq_outbound_mails_recipient_kind_about"),
        Index("ix_outbound_mails_next_attempt", "next_attempt_at"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    #: the normalised address (``models.user.normalize_email``)
    recipient: Mapped[str] = mapped_column(String(254))
    #: the object the mail is about: ``order:<public_id>``, ``user:<id>:reset:<nonce>``, ...
    about: Mapped[str] = mapped_column(String(255))
    context: Mapped[str] = mapped_column(Text, default="{}")
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), nullable=True, index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
