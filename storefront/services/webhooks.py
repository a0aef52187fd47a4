"""Stripe webhooks: verify, store and acknowledge; a worker fetches, applies, marks processed.

The stored event is the truth (a transactional outbox); the queue only wakes a worker.

1. :func:`store` (the view): the raw body's ``Stripe-Signature`` is checked (400 without a valid
   one, or when the timestamp is more than the tolerance away from now, in the past or the
   future), and the event's shape: a UTF-8 JSON Stripe event with an ``evt_`` id, an integer
   ``created`` and an object in ``data.object`` (400 otherwise; nothing is stored). The event is
   stored by its Stripe id (unique), unprocessed and due now, in one commit (which also makes the
   Stripe sync of the order it is about due, so the buyer's next status poll shows the payment);
   the view answers 200 and then queues :func:`process_stored` (a queue that is down loses
   nothing: the sweeper, :func:`process_due`, finds every due row).
2. :func:`process_stored` (a worker) claims the row with one UPDATE (its next attempt moves a
   lease ahead), then the event's handler (registered by type in :mod:`.events`) fetches what it
   needs from Stripe with **no database transaction open**, then one short unit of work marks the
   row processed (``UPDATE … WHERE processed_at IS NULL``: two workers on one event apply it
   once) and applies it. A failure records the error and the next attempt
   (:func:`retry_delay`: exponential backoff; after ``WEBHOOK_MAX_ATTEMPTS`` the row shows as
   failed in the admin, which can replay it: :func:`process`).
3. After commit, Stripe writes the change made owed (a Lifetime purchase ends the buyer's
   subscription) are sent: :func:`.uow.run_after_commit`.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, cast

from flask import current_app
from sqlalchemy import Engine, Table, bindparam, create_engine, exists, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql.expression import Executable

from .. import log_setup, metrics
from ..extensions import db
from ..models import Order, StripeEvent
from ..models.base import utcnow
from ..models.order import SYNCABLE
from ..stripe_gateway import (
    GatewayError,
    WebhookPayloadInvalid,
    get_gateway,
    idempotency_key,
)
from . import events
from .uow import read_then_release, unit_of_work
from .webhook_checks import check_event, parse

log = logging.getLogger(__name__)

#: Stripe events are a few KiB; a body larger than this is refused before it is read (413)
MAX_BYTES = 256 * 1024

#: the events the store listens to (registered with the webhook endpoint): those with a handler
ENABLED_EVENTS = events.enabled_events()


@dataclass
class Outcome:
    status: int
    body: dict[str, Any]


# --- receiving: store and acknowledge ------------------------------------------------------------


@dataclass
class Stored:
    """What :func:`store` did: the answer for Stripe, and the stored row a worker should
    process (None: nothing left to do)."""

    outcome: Outcome
    row_id: int | None


def store(payload: bytes, signature: str | None) -> Stored:
    """Verify one delivery and store it, unprocessed and due now (committed before this
    returns); the view answers 200 and wakes a worker (:func:`process_stored`). A repeat of a
    stored event stores nothing: processed, it is acknowledged as a duplicate; not yet, its row
    is handed back to wake a worker again (the claim keeps one worker on it).

    This is the path that must keep up with Stripe's bursts, so it runs prepared Core statements
    on a connection of its own, not the ORM session: on PostgreSQL ONE statement in autocommit
    (the INSERT … ON CONFLICT DO NOTHING RETURNING, with the order's sync-due UPDATE in a
    data-modifying CTE that runs only when the row is new) -- one round trip, atomic, committed
    when it answers; on SQLite the same two statements in one transaction."""
    event = parse(payload, signature)
    values = _row_values(event, payload.decode("utf-8"))
    column, order_ref = _order_reference(event)
    if db.engine.dialect.name == "postgresql":
        row_id = _store_on_postgres(values, column, order_ref)
    else:
        with db.engine.connect() as conn, conn.begin():
            row_id = conn.execute(_statements(False, None), values).scalar()
            if row_id is not None and column is not None:
                conn.execute(_statements(False, column), {"order_ref": order_ref, "updated_at": values["received_at"]})
    if row_id is not None:
        return Stored(Outcome(200, {"received": True}), row_id)
    with db.engine.connect() as conn:
        row = conn.execute(_STORED_ROW, {"stripe_id": event["id"]}).one()
    if row.processed_at is not None:
        return Stored(Outcome(200, {"received": True, "duplicate": True}), None)
    return Stored(Outcome(200, {"received": True}), row.id)


def _store_on_postgres(values: dict[str, Any], column: str | None, order_ref: str | None) -> int | None:
    """The store's one statement, on :func:`autocommit_engine`; the new row's id (None: stored
    before). A connection that died (the database restarted) is found out by the statement
    rather than by a ping: the store is then retried once on a fresh connection -- safe, since
    storing an event twice stores it once."""
    params = {**values, "order_ref": order_ref, "updated_at": values["received_at"]}
    statement = _statements(True, column)
    try:
        with autocommit_engine().connect() as conn:
            return cast("int | None", conn.execute(statement, params).scalar())
    except DBAPIError as err:
        if not err.connection_invalidated:
            raise
    with autocommit_engine().connect() as conn:
        return cast("int | None", conn.execute(statement, params).scalar())


#: one per database URL and process (gunicorn workers each make their own after the fork)
_AUTOCOMMIT_ENGINES: dict[str, Engine] = {}


def autocommit_engine() -> Engine:
    """PostgreSQL: a small pool of the app's database in autocommit (the store is one statement,
    committed when it answers: no BEGIN, no COMMIT, no isolation level set and reset per
    checkout) and without the app pool's pre-ping, a round trip per checkout that cost a fifth of
    the acknowledgements a second on a busy 2-core box (987-1,043/s without, 779-940/s with)."""
    url = db.engine.url
    key = url.render_as_string(hide_password=False)
    engine = _AUTOCOMMIT_ENGINES.get(key)
    if engine is None:
        engine = _AUTOCOMMIT_ENGINES[key] = create_engine(url, isolation_level="AUTOCOMMIT", pool_size=2)
    return engine


def _order_reference(event: dict[str, Any]) -> tuple[str | None, str | None]:
    """An event about a buyer's payment makes the order's Stripe sync due (in the commit that
    stores it): the order page's next status poll asks Stripe, so it shows "paid" within one
    poll of the webhook arriving, however busy (or down) the workers are. Returns the order
    column and the Stripe id to find the order by (None, None: not about an order's payment)."""
    obj, event_type = event["data"]["object"], event["type"]
    column, stripe_id = "stripe_payment_intent_id", None
    if event_type.startswith("payment_intent."):
        stripe_id = obj.get("id")
    elif event_type.startswith("charge."):
        reference = obj.get("payment_intent")
        stripe_id = reference.get("id") if isinstance(reference, dict) else reference
    elif event_type.startswith("checkout.session."):
        column, stripe_id = "stripe_checkout_session_id", obj.get("id")
    return (column, stripe_id) if isinstance(stripe_id, str) else (None, None)


_STORED_ROW = select(StripeEvent.id, StripeEvent.processed_at).where(StripeEvent.stripe_id == bindparam("stripe_id"))
_STATEMENTS: dict[tuple[bool, str | None], Executable] = {}


def _statements(postgres: bool, column: str | None) -> Executable:
    """The store's statements, built once (SQLAlchemy then reuses their compiled form; psycopg
    prepares a statement it has run a few times). PostgreSQL: the whole store for an event about
    the order found by ``column`` (None: no order to mark). SQLite: ``column`` None is the
    INSERT, else the order's UPDATE."""
    key = (postgres, column)
    statement = _STATEMENTS.get(key)
    if statement is None:
        statement = _STATEMENTS[key] = _build_statement(postgres, column)
    return statement


def _build_statement(postgres: bool, column: str | None) -> Executable:
    table = cast(Table, StripeEvent.__table__)
    insert = (
        (postgresql.insert(table) if postgres else sqlite.insert(table))
        .values({name: bindparam(name, type_=table.c[name].type) for name in _ROW_COLUMNS})
        .on_conflict_do_nothing(index_elements=["stripe_id"])
        .returning(table.c.id)
    )
    if column is None:
        return insert
    orders = cast(Table, Order.__table__)
    mark = (
        update(orders)
        .where(
            orders.c[column] == bindparam("order_ref"),
            orders.c.status.in_(sorted(SYNCABLE)),
            orders.c.synced_at.is_not(None),
        )
        .values(
            synced_at=None, updated_at=bindparam("updated_at", type_=orders.c.updated_at.type)
        )  # no onupdate in a CTE
    )
    if not postgres:
        return mark
    stored = insert.cte("stored")  # the UPDATE runs only when the INSERT stored a row: a repeat changes nothing
    return select(stored.c.id).add_cte(mark.where(exists(select(stored.c.id))).cte("sync_due"))


# --- processing (a worker, the sweeper, an admin's replay) ---------------------------------------


def process_stored(event_row_id: int) -> Outcome | None:
    """Process a stored event if it is due. None: not due (processed, given up, not yet time to
    retry, or another worker holds it).

    The claim is one UPDATE of the row (its attempt counted, its next attempt moved a lease
    ahead). An event whose handler asks Stripe nothing (a payment's events carry their object)
    is then applied and marked processed in that same transaction: the row's lock keeps other
    workers out, and a worker killed mid-event rolls it all back, leaving the row due. One whose
    handler fetches commits the claim first -- the lease keeps the sweeper and other workers
    away while it asks Stripe with no transaction open -- and applies in a unit of work after."""
    now = utcnow()
    lease = timedelta(seconds=float(current_app.config["WEBHOOK_LEASE_SECONDS"]))
    claimed = db.session.execute(
        update(StripeEvent)
        .where(
            StripeEvent.id == event_row_id,
            StripeEvent.processed_at.is_(None),
            StripeEvent.next_attempt_at <= now,
        )
        .values(next_attempt_at=now + lease, attempts=StripeEvent.attempts + 1)
        .returning(StripeEvent.type, StripeEvent.payload)
        .execution_options(synchronize_session=False)
    ).first()
    if claimed is None:
        db.session.commit()
        return None
    registered = events.registration(claimed.type)
    in_claim = registered is None or not registered.fetches
    if not in_claim:
        db.session.commit()
    return _process_payload(claimed.payload, source_prefix="event", counted=True, in_claim=in_claim)


def process(event_row_id: int, *, source_prefix: str = "event") -> Outcome:
    """Run a stored event's handler again, processed or not (an admin's replay, ``flask
    replay-event``): fetched and applied as on arrival; safe because every handler is
    idempotent."""
    row = db.session.get(StripeEvent, event_row_id)
    if row is None:
        return Outcome(404, {"received": False})
    text = row.payload
    return _process_payload(text, source_prefix=source_prefix, counted=False)


def process_due(seconds: float = 50.0) -> str:
    """The sweeper: process the stored events whose next attempt was due when it started (never
    queued because the queue was down, their worker killed mid-event, failed ones waiting for
    their retry), oldest first, until none is left or ``seconds`` have passed (the next run goes
    on; a run every minute stays within its minute). Several sweepers at once share the work:
    each event is claimed. Returns a summary for people."""
    started, deadline = utcnow(), time.monotonic() + seconds
    done = failed = 0
    while time.monotonic() < deadline:
        due = db.session.scalars(
            select(StripeEvent.id)
            .where(StripeEvent.next_attempt_at <= started, StripeEvent.processed_at.is_(None))
            .order_by(StripeEvent.next_attempt_at, StripeEvent.id)
            .limit(100)
        ).all()
        read_then_release()
        if not due:
            break
        for row_id in due:  # a claimed or failed event's next attempt is after ``started``
            outcome = process_stored(row_id)
            if outcome is not None and outcome.status == 200:
                done += 1
            elif outcome is not None:
                failed += 1
            if time.monotonic() >= deadline:
                break
    return f"{done} processed, {failed} failed"


def _process_payload(text: str, *, source_prefix: str, counted: bool, in_claim: bool = False) -> Outcome:
    """``in_claim``: the caller's claim of the row is still open (:func:`process_stored`)."""
    if not in_claim:
        read_then_release()
    event = json.loads(text)
    try:
        check_event(event)
    except WebhookPayloadInvalid as err:  # stored before events were checked on arrival
        db.session.rollback()
        _record_failure(event.get("id"), err, counted=counted and not in_claim, give_up=True)
        return Outcome(400, {"received": True, "processed": False, "error": err.user_message})
    return _run(event, source=f"{source_prefix}:{event['id']}", counted=counted, in_claim=in_claim)


def _run(event: dict[str, Any], *, source: str, counted: bool, in_claim: bool = False) -> Outcome:
    """Fetch (no transaction open: the handler), then apply and mark processed in one unit of
    work; what the change owes Stripe is sent after its commit (:func:`.uow.after_commit`).
    ``counted``: the attempt was counted when the row was claimed. ``in_claim``: the claim's
    transaction is still open (the handler asks Stripe nothing) and the unit goes on with it."""
    log_setup.bind(stripe_event_id=event["id"], stripe_event_type=event["type"])
    if not in_claim:
        read_then_release()
    registered = events.registration(event["type"])
    try:
        apply = registered.handler(event) if registered is not None else None
    except Exception as err:  # Stripe unreachable (or a bug): recorded with why; retried later
        db.session.rollback()
        if isinstance(err, GatewayError):
            log.warning("webhook %s (%s): fetch failed: %s", event["id"], event["type"], err.code)
        else:
            log.exception("webhook %s (%s): fetch failed", event["id"], event["type"])
        _record_failure(event["id"], err, counted=counted and not in_claim)
        return Outcome(503 if isinstance(err, GatewayError) else 500, {"received": True, "processed": False})
    try:
        with unit_of_work(joins_open=in_claim):
            claimed = _claim(event["id"], counted=counted)
            result = apply(source) if claimed and apply is not None else None
    except Exception as err:
        log.exception("webhook %s (%s) failed", event["id"], event["type"])
        _record_failure(event["id"], err, counted=counted and not in_claim)  # a rolled-back claim counted nothing
        return Outcome(500, {"received": True, "processed": False})
    if not claimed:
        return Outcome(200, {"received": True, "duplicate": True})
    if counted:  # processed for the first time (a replay is no lag)
        metrics.observe_webhook_lag(event["created"], event["type"])
    if apply is None:
        log.info("webhook %s: %s not handled, acknowledged", event["id"], event["type"])
    elif result is None:
        log.info("webhook %s: %s is about an object we don't know; acknowledged", event["id"], event["type"])
    return Outcome(200, {"received": True, "processed": True})


_ROW_COLUMNS = (
    "stripe_id",
    "type",
    "object_id",
    "created",
    "livemode",
    "payload",
    "received_at",
    "processed_at",
    "next_attempt_at",
    "attempts",
    "error",
)


def _row_values(event: dict[str, Any], text: str) -> dict[str, Any]:
    obj = event["data"]["object"]
    now = utcnow()
    return dict(
        stripe_id=event["id"],
        type=event["type"],
        object_id=obj.get("id"),
        created=event["created"],
        livemode=bool(event.get("livemode")),
        payload=text,
        received_at=now,
        processed_at=None,
        next_attempt_at=now,
        attempts=0,
        error=None,
    )


def _claim(stripe_id: str, *, counted: bool) -> bool:
    """The unit of work's first statement: mark the stored event processed. On a replay the row
    is taken whatever its state; otherwise only while unprocessed. False: another worker has
    processed it (on PostgreSQL this waits for that worker's commit)."""
    condition = StripeEvent.stripe_id == stripe_id
    if counted:
        condition = condition & StripeEvent.processed_at.is_(None)
    return (
        db.session.execute(
            update(StripeEvent)
            .where(condition)
            .values(
                processed_at=utcnow(),
                error=None,
                next_attempt_at=None,
                attempts=StripeEvent.attempts + (0 if counted else 1),
            )
            .returning(StripeEvent.id)
            .execution_options(synchronize_session=False)
        ).first()
        is not None
    )


def retry_delay(attempts: int) -> float | None:
    """Seconds until the next attempt after ``attempts`` failed ones (exponential:
    ``WEBHOOK_RETRY_SECONDS`` × 2^(n-1), at most ``WEBHOOK_RETRY_MAX_SECONDS``); None once
    ``WEBHOOK_MAX_ATTEMPTS`` were made (the event shows as failed; an admin may replay it)."""
    config = current_app.config
    if attempts >= int(config["WEBHOOK_MAX_ATTEMPTS"]):
        return None
    base, ceiling = float(config["WEBHOOK_RETRY_SECONDS"]), float(config["WEBHOOK_RETRY_MAX_SECONDS"])
    delay: float = min(base * 2.0 ** max(attempts - 1, 0), ceiling)
    return delay


def _record_failure(stripe_id: Any, err: Exception, *, counted: bool, give_up: bool = False) -> None:
    """Record why an attempt failed and when the next one is due (None: given up)."""
    error = f"{type(err).__name__}: {err}"[:2000]
    attempts = db.session.scalar(
        update(StripeEvent)
        .where(StripeEvent.stripe_id == str(stripe_id))
        .values(error=error, attempts=StripeEvent.attempts + (0 if counted else 1))
        .returning(StripeEvent.attempts)
        .execution_options(synchronize_session=False)
    )
    if attempts is not None:
        delay = None if give_up else retry_delay(attempts)
        db.session.execute(
            update(StripeEvent)
            .where(StripeEvent.stripe_id == str(stripe_id), StripeEvent.processed_at.is_(None))
            .values(next_attempt_at=None if delay is None else utcnow() + timedelta(seconds=delay))
            .execution_options(synchronize_session=False)
        )
    db.session.commit()


# --- registering the endpoint ---------------------------------------------------------------------


def register_endpoint(url: str) -> tuple[dict[str, Any], str | None]:
    """Create a webhook endpoint for ``url`` at Stripe (or the sandbox) for :data:`ENABLED_EVENTS`.

    Stripe shows an endpoint's signing secret only when it is created, so an existing endpoint
    for the same URL is replaced. Returns (endpoint, secret).
    """
    gateway = get_gateway()
    replaced = []
    for endpoint in gateway.list_webhook_endpoints():
        if endpoint.get("url") == url:
            gateway.delete_webhook_endpoint(endpoint["id"])
            replaced.append(endpoint["id"])
    endpoint = gateway.create_webhook_endpoint(
        url=url,
        enabled_events=ENABLED_EVENTS,
        idempotency_key=idempotency_key("webhook-endpoint", payload={"url": url, "replaces": replaced}),
    )
    return endpoint, endpoint.get("secret")
