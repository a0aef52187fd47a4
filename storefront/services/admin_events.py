"""The admin's list of stored Stripe events, with each event's processing state.

The state follows from three columns (see :mod:`storefront.models.stripe_event` and
:func:`.webhooks.retry_delay`, ``_record_failure``), as of ``now``:

* ``processed`` -- ``processed_at`` is set;
* ``failed`` -- given up: not processed and no next attempt (after ``WEBHOOK_MAX_ATTEMPTS``
  failures, or an event that can never be applied); an admin may replay it;
* ``retrying`` -- tried (``attempts`` > 0) and its next attempt is in the future: the backoff
  after a failure, or a worker's lease while it processes the event;
* ``pending`` -- waiting for a worker: due now, or never tried yet.

The four conditions partition the table, so the filter by state and the state shown agree.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Row, and_, func, or_, select

from ..extensions import db
from ..models import StripeEvent
from ..models.base import utcnow
from ..params import InvalidParameter

#: failed first: the order of the filter's choices
STATES = ("failed", "retrying", "pending", "processed")
#: how much of an event's last error the list shows (the event's page has all of it)
ERROR_CHARS = 120


def state_condition(state: str, now: datetime) -> ColumnElement[bool]:
    """The SQL condition of ``state`` (one of :data:`STATES`) as of ``now``."""
    unprocessed = StripeEvent.processed_at.is_(None)
    waiting = and_(unprocessed, StripeEvent.next_attempt_at.is_not(None))
    if state == "processed":
        return StripeEvent.processed_at.is_not(None)
    if state == "failed":
        return and_(unprocessed, StripeEvent.next_attempt_at.is_(None))
    if state == "retrying":
        return and_(waiting, StripeEvent.attempts > 0, StripeEvent.next_attempt_at > now)
    if state == "pending":
        return and_(waiting, or_(StripeEvent.attempts == 0, StripeEvent.next_attempt_at <= now))
    raise InvalidParameter("state", f"“state” must be one of: {', '.join(STATES)}.")


def parse_state(raw: str | None) -> str | None:
    """The ``state`` query parameter: empty -> None (any state); unknown -> 400."""
    value = (raw or "").strip()
    if not value:
        return None
    if value not in STATES:
        raise InvalidParameter("state", f"“state” must be one of: {', '.join(STATES)}.")
    return value


def state_of(processed_at: datetime | None, next_attempt_at: datetime | None, attempts: int, now: datetime) -> str:
    """The state of one event (the same rules as :func:`state_condition`)."""
    if processed_at is not None:
        return "processed"
    if next_attempt_at is None:
        return "failed"
    if attempts > 0 and next_attempt_at > now:
        return "retrying"
    return "pending"


@dataclass(frozen=True)
class EventRow:
    id: int
    stripe_id: str
    type: str
    object_id: str | None
    received_at: datetime
    processed_at: datetime | None
    next_attempt_at: datetime | None
    attempts: int
    #: the last error, cut to :data:`ERROR_CHARS` (None: none recorded)
    error: str | None
    error_cut: bool
    state: str


@dataclass(frozen=True)
class EventFilters:
    kind: str = ""
    q: str = ""
    state: str | None = None
    #: "failed or unprocessed" (the older checkbox): every state but processed, or an error
    problem: bool = False


def events_page(f: EventFilters, before: int | None, size: int) -> tuple[list[EventRow], int | None]:
    """The newest ``size`` events matching ``f`` below id ``before``; and the id to pass as
    ``before`` for the next page (None: no more)."""
    now = utcnow()
    query = select(
        StripeEvent.id,
        StripeEvent.stripe_id,
        StripeEvent.type,
        StripeEvent.object_id,
        StripeEvent.received_at,
        StripeEvent.processed_at,
        StripeEvent.next_attempt_at,
        StripeEvent.attempts,
        func.substr(StripeEvent.error, 1, ERROR_CHARS + 1).label("error"),
    )
    if f.kind:
        query = query.where(StripeEvent.type == f.kind)
    if f.q:
        query = query.where(or_(StripeEvent.stripe_id == f.q, StripeEvent.object_id == f.q))
    if f.state:
        query = query.where(state_condition(f.state, now))
    if f.problem:
        query = query.where(or_(StripeEvent.processed_at.is_(None), StripeEvent.error.is_not(None)))
    if before:
        query = query.where(StripeEvent.id < before)
    found = db.session.execute(query.order_by(StripeEvent.id.desc()).limit(size + 1)).all()
    rows = [_row(r, now) for r in found[:size]]
    return rows, (rows[-1].id if len(found) > size else None)


def _row(r: Row[Any], now: datetime) -> EventRow:
    error: str | None = r.error
    cut = error is not None and len(error) > ERROR_CHARS
    return EventRow(
        id=r.id,
        stripe_id=r.stripe_id,
        type=r.type,
        object_id=r.object_id,
        received_at=r.received_at,
        processed_at=r.processed_at,
        next_attempt_at=r.next_attempt_at,
        attempts=r.attempts,
        error=error[:ERROR_CHARS] if error is not None and cut else error,
        error_cut=cut,
        state=state_of(r.processed_at, r.next_attempt_at, r.attempts, now),
    )


def failed_count() -> int:
    """How many events were given up (the partial index ``ix_stripe_events_failed``)."""
    return int(
        db.session.scalar(select(func.count()).select_from(StripeEvent).where(state_condition("failed", utcnow()))) or 0
    )
