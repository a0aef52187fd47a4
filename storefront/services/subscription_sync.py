"""The subscription mirror: our ``subscriptions`` rows kept true to Stripe's subscriptions.

A row is only ever written from a subscription object freshly fetched from Stripe
(:func:`apply_subscription`), whatever a webhook said; the newest answer wins. A subscription we
have not seen (started through Checkout) gets its row here, if the customer is one of our buyers.

It also holds the one Stripe write that must follow a local change: a paid Lifetime order ends
the buyer's renewing subscriptions (see "owed cancels" below).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from ..extensions import db
from ..models import Order, Price, Subscription, User
from ..models.base import insert_or_ignore, utcnow
from ..models.order import SYNCABLE
from ..models.subscription import LIVE_STATUSES, PAST_DUE_STATUSES, new_subscription_id
from ..stripe_gateway import GatewayError, StripeRequestInvalid, get_gateway, idempotency_key
from .stripe_objects import StripeObject, stripe_id, subscription_period, subscription_price_id, ts
from .uow import after_commit

log = logging.getLogger(__name__)


def user_id_for_customer(customer: Any) -> int | None:
    """Our buyer behind a Stripe customer (an id or an expanded customer), if it is one of ours."""
    customer_id = stripe_id(customer)
    if not customer_id:
        return None
    return db.session.scalar(select(User.id).where(User.stripe_customer_id == customer_id))


def lock_subscription(row_id: int) -> Subscription:
    """Take the subscription row's lock (as :func:`.orders.lock_order` does) and return it fresh."""
    db.session.execute(
        update(Subscription)
        .where(Subscription.id == row_id)
        .values(lock_version=Subscription.lock_version + 1)
        .execution_options(synchronize_session=False)
    )
    return db.session.execute(
        select(Subscription).where(Subscription.id == row_id).execution_options(populate_existing=True)
    ).scalar_one()


def apply_subscription(
    sub: StripeObject,
    *,
    source: str,
    fetched_at: datetime | None = None,
    asked_at: datetime | None = None,
    event_created: int | None = None,
) -> Subscription | None:
    """Mirror a subscription object freshly fetched from Stripe into our row.

    ``fetched_at`` is when Stripe's answer *arrived*; ``asked_at``, for a read (a webhook's
    re-fetch, a sync), when it was sent -- without it the answer is our own write's. Two rules keep
    the newest state whatever order duplicate and out-of-order answers come in:

    * an answer that arrived before the one already applied is older news (a request that
      waited behind a slow one may be answered after a later-started write, so arrival, not
      start, orders answers -- ordering by start once let a webhook's fetch, started after the
      buyer's plan change but answered before it, overwrite it);
    * a read sent before the answer to our own last write arrived may have been served from the
      state before that write, even if it arrives later: it does not overwrite the write. A change
      it might have seen after the write sends its own event, whose re-fetch comes later.

    A subscription we have not seen (started through Checkout) gets its row here, if the
    customer is one of our buyers.
    """
    row_id = _row_id(sub, source)
    if row_id is None:
        return None
    row = lock_subscription(row_id)
    if fetched_at is not None:
        older = row.fetched_at is not None and fetched_at < row.fetched_at
        before_our_write = asked_at is not None and row.wrote_at is not None and asked_at < row.wrote_at
        if older or before_our_write:
            log.info("subscription %s: older answer ignored (%s)", sub["id"], source)
            return row
        row.fetched_at = fetched_at
        if asked_at is None:
            row.wrote_at = fetched_at
    _copy(sub, row)
    _note_owed_cancel(row)
    return row


def _row_id(sub: StripeObject, source: str) -> int | None:
    """Our row for ``sub``, inserted (race-free, on its unique Stripe id) if we have none yet."""
    row_id = db.session.scalar(select(Subscription.id).where(Subscription.stripe_subscription_id == sub["id"]))
    if row_id is not None:
        return row_id
    user_id = user_id_for_customer(sub.get("customer"))
    if user_id is None:
        log.info("subscription %s: not one of our buyers (%s)", sub.get("id"), source)
        return None
    insert_or_ignore(
        db.session,
        Subscription.__table__,
        dict(
            public_id=new_subscription_id(),
            user_id=user_id,
            stripe_subscription_id=sub["id"],
            status=sub.get("status") or "incomplete",
            cancel_at_period_end=False,
            lock_version=0,
            created_at=utcnow(),
            updated_at=utcnow(),
        ),
        "stripe_subscription_id",
    )
    return db.session.execute(
        select(Subscription.id).where(Subscription.stripe_subscription_id == sub["id"])
    ).scalar_one()


def _copy(sub: StripeObject, row: Subscription) -> None:
    """Stripe's state of ``sub`` onto our (locked) row."""
    stripe_price = subscription_price_id(sub)
    if stripe_price and stripe_price != row.stripe_price_id:
        row.stripe_price_id = stripe_price
        row.price_id = db.session.scalar(select(Price.id).where(Price.stripe_price_id == stripe_price))
    period = subscription_period(sub)
    if period is not None:
        row.current_period_start, row.current_period_end = period
    row.status = sub.get("status") or row.status
    row.cancel_at_period_end = bool(sub.get("cancel_at_period_end"))
    row.canceled_at = ts(sub.get("canceled_at"))
    row.ended_at = ts(sub.get("ended_at"))
    row.latest_invoice_id = stripe_id(sub.get("latest_invoice")) or row.latest_invoice_id


def subscription_paid(order: Order) -> None:
    """The first (or an overdue) invoice is paid: the subscription is active as far as we know
    now, unless another of its invoices is still unpaid. The next fetch from Stripe confirms it;
    answers received before this moment are older news (``fetched_at``)."""
    unpaid = db.session.scalar(
        select(Order.id)
        .where(
            Order.stripe_subscription_id == order.stripe_subscription_id,
            Order.id != order.id,
            Order.status.in_(SYNCABLE),
        )
        .limit(1)
    )
    if unpaid is not None:
        return
    db.session.execute(
        update(Subscription)
        .where(
            Subscription.stripe_subscription_id == order.stripe_subscription_id,
            Subscription.status.in_(("incomplete", *PAST_DUE_STATUSES)),
        )
        .values(status="active", fetched_at=utcnow())
        .execution_options(synchronize_session=False)
    )


# --- a Stripe write owed after a local change: recorded, sent after commit, retried ------------------
#
# A paid Lifetime order ends the buyer's subscription at Stripe. That write never runs inside the
# order's transaction: a slow Stripe would hold the order lock (and on SQLite the database's write
# lock) for as long as it takes, and a rollback after Stripe said yes would forget a change Stripe
# made. Instead the transaction that pays the order records the intent on the subscription row
# (``pending_cancel``) and registers :func:`_send_owed_cancels` with ``uow.after_commit``: once
# the transaction has committed (``uow.unit_of_work``, webhook processing), it sends the cancel
# with an idempotency key. A failure stays recorded and is retried by the next commit that owes
# it, the account page's sync (``subscriptions.enforce_lifetime``) and ``flask reconcile``
# (:func:`finish_pending_cancels`).

#: ``db.session.info`` key: the buyers whose owed cancels the current transaction recorded
AFTER_COMMIT = "storefront.owed_cancels"


def end_subscriptions_for_lifetime(user_id: int, *, reason: str) -> int:
    """A Lifetime purchase is paid: record, in the caller's transaction, that the buyer's renewing
    subscriptions must end (at the end of the period they have paid for; an unpaid one now).
    Stripe is asked after commit. Returns how many were newly marked."""
    marked = db.session.execute(
        update(Subscription)
        .where(
            Subscription.user_id == user_id,
            Subscription.status.in_(LIVE_STATUSES),
            Subscription.cancel_at_period_end.is_(False),
            Subscription.pending_cancel.is_(None),
        )
        .values(
            pending_cancel=f"lifetime:{reason}"[:120],
            pending_cancel_since=utcnow(),
            pending_cancel_attempts=0,
            pending_cancel_error=None,
        )
        .returning(Subscription.id)
        .execution_options(synchronize_session=False)
    ).all()
    _owe_after_commit(user_id)  # marked now or earlier and not sent yet: send it after commit
    return len(marked)


def _owe_after_commit(user_id: int) -> None:
    db.session.info.setdefault(AFTER_COMMIT, set()).add(user_id)
    after_commit(_send_owed_cancels)


def _note_owed_cancel(row: Subscription) -> None:
    """Keep ``pending_cancel`` true to Stripe's state just applied: settled once the
    subscription ends or is set to end; owed if a Lifetime owner's subscription still renews
    (e.g. one started through Checkout that we first hear of after the Lifetime purchase).
    Whatever is still owed is tried again after this transaction commits."""
    if row.pending_cancel is not None:
        if not row.live or row.cancel_at_period_end:
            row.pending_cancel = row.pending_cancel_since = row.pending_cancel_error = None
        else:
            _owe_after_commit(row.user_id)
        return
    if not row.live or row.cancel_at_period_end:
        return
    if db.session.scalar(select(User.lifetime_since).where(User.id == row.user_id)) is None:
        return
    row.pending_cancel = f"lifetime:user-{row.user_id}"
    row.pending_cancel_since = utcnow()
    row.pending_cancel_attempts = 0
    row.pending_cancel_error = None
    _owe_after_commit(row.user_id)


def _send_owed_cancels() -> None:
    """After commit: send the Stripe writes the transaction just committed owes."""
    user_ids = db.session.info.pop(AFTER_COMMIT, None)
    if user_ids:
        finish_pending_cancels(user_ids=user_ids)


def finish_pending_cancels(*, user_ids: Iterable[int] | None = None, limit: int = 100) -> tuple[int, int]:
    """Send every owed subscription cancel (of ``user_ids``, or all) to Stripe, each in its own
    short steps with no transaction open across the call. Returns (settled, still pending).
    Never raises: what fails stays recorded for the next try."""
    query = select(Subscription.id).where(Subscription.pending_cancel.is_not(None))
    if user_ids is not None:
        query = query.where(Subscription.user_id.in_(list(user_ids)))
    db.session.commit()
    row_ids = db.session.scalars(query.order_by(Subscription.pending_cancel_since).limit(limit)).all()
    db.session.commit()
    settled = 0
    for row_id in row_ids:
        try:
            settled += finish_pending_cancel(row_id)
        except Exception:  # one row must not stop the others; it stays owed
            db.session.rollback()
            log.exception("owed cancel of subscription row %s failed", row_id)
    return settled, len(row_ids) - settled


def finish_pending_cancel(row_id: int) -> bool:
    """Send one owed cancel; True once it holds at Stripe and our row says so.

    The try is claimed (its number counted) and committed first; the idempotency key names
    the try, so a retry is a new request, and a retry first reads the subscription in case an
    earlier try reached Stripe but its answer was lost (then nothing is sent again)."""
    claimed = db.session.execute(
        update(Subscription)
        .where(Subscription.id == row_id, Subscription.pending_cancel.is_not(None))
        .values(pending_cancel_attempts=Subscription.pending_cancel_attempts + 1)
        .returning(
            Subscription.stripe_subscription_id,
            Subscription.status,
            Subscription.pending_cancel,
            Subscription.pending_cancel_attempts,
        )
        .execution_options(synchronize_session=False)
    ).first()
    db.session.commit()
    if claimed is None:
        return True  # settled meanwhile
    stripe_id_, status, reason, attempt = claimed
    try:
        sub = _send_cancel(stripe_id_, status, reason, attempt)
    except GatewayError as err:
        return _cancel_failed(row_id, stripe_id_, err)
    try:
        row = apply_subscription(sub, source=reason or "owed-cancel", fetched_at=utcnow())
        settled = row is None or row.pending_cancel is None
        db.session.commit()
    except Exception:
        db.session.rollback()
        raise
    log.info("subscription %s: owed cancel (%s) %s", stripe_id_, reason, "holds" if settled else "still owed")
    return settled


def _send_cancel(stripe_id_: str, status: str, reason: str | None, attempt: int) -> dict[str, Any]:
    """Ask Stripe to end the subscription (unless an earlier try already did); its state after."""
    gateway = get_gateway()
    try:
        sub = gateway.retrieve_subscription(stripe_id_) if attempt > 1 else None
        if sub is None or (sub.get("status") in LIVE_STATUSES and not sub.get("cancel_at_period_end")):
            key = idempotency_key("subscription", stripe_id_, "owed-cancel", reason, attempt)
            if status == "incomplete":  # never paid: nothing to run to the period's end
                sub = gateway.cancel_subscription(stripe_id_, idempotency_key=key)
            else:
                sub = gateway.update_subscription(stripe_id_, {"cancel_at_period_end": True}, idempotency_key=key)
    except StripeRequestInvalid as err:  # e.g. already canceled: Stripe's state decides
        try:
            return gateway.retrieve_subscription(stripe_id_)
        except GatewayError:
            raise err from None  # the refusal is what the row records
    return sub


def _cancel_failed(row_id: int, stripe_id_: str, err: GatewayError) -> bool:
    log.warning("subscription %s: owed cancel not sent (%s); retried later", stripe_id_, err.code)
    db.session.execute(
        update(Subscription)
        .where(Subscription.id == row_id)
        .values(pending_cancel_error=f"{err.code}: {err.detail}"[:255])
        .execution_options(synchronize_session=False)
    )
    db.session.commit()
    return False
