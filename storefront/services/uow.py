"""Transaction boundaries: one unit of work owns each commit; no Stripe call while one is open.

The rule of the code is **fetch, then apply**: a service asks Stripe with no database
transaction open, then applies what it got in one short :func:`unit_of_work`. A slow Stripe
therefore never holds a row lock (on SQLite: the database's write lock) or a pooled connection
in a transaction.

Three tools make that the shape of the code:

* :func:`unit_of_work` -- ``with unit_of_work():`` ends any implicit read first, then commits
  the block, or rolls it back on any error.
* :func:`after_commit` -- work a unit owes once it has committed (a Stripe write that must
  follow a local change: a Lifetime purchase ends the buyer's subscription). Registered inside
  the unit, run once after its commit, outside any transaction; dropped on rollback.
* :func:`read_then_release` -- the boundary before a Stripe call: a service that reads the
  database (SQLAlchemy opens a transaction implicitly on the first read) and then calls Stripe
  ends that read explicitly first, keeping what it read as a snapshot (not expired: using it
  asks the database nothing, so no transaction reopens). Services call it where the network
  step begins; the app does the same right after Flask-Login loads the user (its user loader),
  so a view starts with no transaction open.

Where the boundary sits (decided for issue 11): **in the services**, explicitly, not in the
gateway (a gateway that committed for its caller would hide the mistake instead of shaping the
code) and not only in the web layer (the CLI, reconcile and webhooks call services too). Each
service function whose next step is a Stripe call reads what it needs, copies into locals what
it will send (a commit expires ORM objects, and touching an expired one reopens a transaction),
calls :func:`read_then_release`, then calls Stripe; what Stripe answers is applied in a
:func:`unit_of_work`. The user loader's release is the web layer's half: a view that reads
nothing more can call such a service directly.

Even a read matters: on PostgreSQL an idle transaction keeps its snapshot, its pooled connection
and any row locks (``FOR UPDATE``) for as long as Stripe takes; on SQLite a written transaction
holds the whole database's write lock (the pysqlite driver takes no lock for a bare read, so
there the cost of a read left open is the next write silently joining it).

``tests/conftest.py``'s ``TransactionGuard`` proves it: any Stripe call made while the calling
thread has a transaction open -- read or write -- fails the test, on every path; and
``tests/test_transactions.py`` times an unrelated write while a webhook and a buyer's page each
wait 2 s for Stripe over real HTTP (under 100 ms; a few ms on SQLite).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..extensions import db

log = logging.getLogger(__name__)

#: ``db.session.info`` key: the callbacks the current unit of work runs after its commit
_AFTER_COMMIT = "storefront.after_commit"


def after_commit(callback: Callable[[], object]) -> None:
    """Run ``callback`` once after the current unit of work commits, with no transaction open.

    Registering the same callable twice in one unit runs it once. On rollback it is dropped.
    """
    callbacks: list[Callable[[], object]] = db.session.info.setdefault(_AFTER_COMMIT, [])
    if callback not in callbacks:
        callbacks.append(callback)


def run_after_commit() -> None:
    """Run (and forget) what the transaction just committed owes. :func:`unit_of_work` calls
    it; code that commits by itself (webhook processing) calls it right after its commit."""
    for callback in db.session.info.pop(_AFTER_COMMIT, ()):
        try:  # what a callback registers anew waits for the next commit (no retry loop)
            callback()
        except Exception:  # the unit has committed: its caller must not see it as failed
            db.session.rollback()
            log.exception("after-commit step %r failed", callback)


def discard_after_commit() -> None:
    """Forget what a rolled-back transaction registered."""
    db.session.info.pop(_AFTER_COMMIT, None)


@contextmanager
def unit_of_work(*, joins_open: bool = False) -> Iterator[None]:
    """``with unit_of_work():`` one transaction; commits, or rolls back on any error. What the
    block registered with :func:`after_commit` runs after the commit, outside the transaction.

    ``joins_open``: the block goes on with the transaction its caller opened with a write (a
    webhook worker's claim of its event row: that lock is the unit's first statement), instead
    of ending it first."""
    if not joins_open:
        db.session.commit()  # end any implicit read: the block's first statement (a lock) comes first
    try:
        yield
        db.session.commit()
    except BaseException:
        db.session.rollback()
        discard_after_commit()
        raise
    run_after_commit()


def read_then_release() -> None:
    """End the session's read transaction before a network call; what was read stays loaded as
    read (a snapshot: not expired, so using it asks the database nothing). Call it where a
    service moves from reading to Stripe; anything read after it opens a new transaction."""
    session = db.session()
    keep = session.expire_on_commit
    session.expire_on_commit = False
    try:
        session.commit()
    finally:
        session.expire_on_commit = keep
