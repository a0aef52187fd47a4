"""Mail as a transactional outbox (issue 13): what the store owes someone by email.

A service decides that a mail is owed *inside* its unit of work: :func:`queue_mail` inserts an
:class:`~storefront.models.OutboundMail` row, unique on (recipient, kind, about), in that same
transaction, and registers an after-commit step that queues ``jobs.send_mail`` for it. So:

* a rolled-back unit owes nothing (no row, no job);
* the same (recipient, kind, object) twice -- a webhook delivered three times, a retried view --
  is one row and one mail (``INSERT ... ON CONFLICT DO NOTHING``; a repeat returns ``False``);
* no SMTP call ever happens inside a transaction: the queue's worker sends it
  (:func:`send_stored`), and a mail the queue never got (queue down) or that failed is sent again
  by the sweeper (:func:`send_due`, every minute) after a backoff, up to ``MAIL_MAX_ATTEMPTS``.

Each ``kind`` is registered once (:func:`register_kind`) with its subject and its templates
(``templates/mail/<template>.txt`` and ``.html``, extending ``mail/_layout.*``). The row's
``context`` is JSON; templates are rendered from it at send time, with ``store_name`` and
``store_url``. A kind may add a ``build`` step that computes more context at send time from the
stored one (the account mails sign their one-time link then: the outbox never holds a token) or
raises :class:`Drop` when the mail is no longer owed. Links come from :func:`store_link`, on
``STORE_URL`` -- never on a request's Host header.
"""

from __future__ import annotations

import json
import logging
import smtplib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from flask import current_app
from flask_babel import gettext
from sqlalchemy import delete, select, update
from sqlalchemy.dialects import postgresql, sqlite

from .. import mailer
from ..extensions import db
from ..models import OutboundMail
from ..models.base import utcnow
from ..models.user import normalize_email
from .uow import after_commit, read_then_release, unit_of_work

log = logging.getLogger(__name__)

#: the queue task that sends one stored mail (declared in storefront/jobs/tasks.py), and where the
#: app keeps its queue (``jobs.queue.EXTENSION_KEY``): named, not imported, because importing
#: ``storefront.jobs`` imports every task and the services they call (an import cycle at runtime)
SEND_TASK = "storefront.jobs.tasks.send_mail"
QUEUE_EXTENSION = "storefront.queue"
#: the sweeper leaves a mail this young to the job queued after its commit
SWEEP_AFTER = timedelta(minutes=1)
#: how long a sent (or given-up) mail's row is kept: it is what makes a late repeat (a webhook
#: Stripe retries for days) send nothing; after that its addresses and names go
KEEP_SENT = timedelta(days=90)
ERROR_CHARS = 2000

Build = Callable[[dict[str, Any]], dict[str, Any]]


class Drop(Exception):
    """Raised by a kind's ``build`` step: this mail is no longer owed (its user is gone, the
    address changed since); it is marked dropped, not retried."""


@dataclass(frozen=True)
class MailKind:
    """``subject`` may name context values (``"Receipt for {product}"``)."""

    subject: str
    template: str
    build: Build | None = None


MAIL_KINDS: dict[str, MailKind] = {}


def register_kind(kind: str, subject: str, template: str, build: Build | None = None) -> None:
    """Declare mail ``kind`` (at import time). ``build(context) -> extra context`` runs at send
    time, in the worker (it may read the database; it may raise :class:`Drop`)."""
    existing = MAIL_KINDS.get(kind)
    new = MailKind(subject, template, build)
    if existing is not None and existing != new:
        raise ValueError(f"mail kind {kind!r} is registered twice")
    MAIL_KINDS[kind] = new


def store_link(endpoint: str, **values: Any) -> str:
    """An absolute URL of the store for a mail: ``STORE_URL`` + the endpoint's path (works in a
    worker, with no request; a request's Host header is never used)."""
    base = current_app.config.get("STORE_URL")
    if not base:
        raise RuntimeError("STORE_URL is not set: links in mails can't be built")
    adapter = current_app.url_map.bind("store.invalid", url_scheme="https")
    return str(base).rstrip("/") + adapter.build(endpoint, values)


# --- queueing ---------------------------------------------------------------------------------------


def queue_mail(
    kind: str,
    *,
    to: str,
    about: str,
    context: dict[str, Any],
    user_id: int | None = None,
    delay: float = 0.0,
) -> bool:
    """Owe mail ``kind`` to ``to`` about object ``about``; call INSIDE a unit of work. True if
    this call stored it (False: owed already -- nothing more is sent). Queued after the commit,
    to be sent ``delay`` seconds from now (its kind's build step may then find it no longer owed)."""
    if kind not in MAIL_KINDS:
        raise ValueError(f"unknown mail kind {kind!r} (register_kind first)")
    recipient = normalize_email(to)
    if not recipient or "@" not in recipient:
        raise ValueError("a mail needs a recipient address")
    now = utcnow()
    due = now + timedelta(seconds=delay)
    table = OutboundMail.__table__
    dialect = db.session.get_bind().dialect.name
    module = postgresql if dialect == "postgresql" else sqlite
    statement = (
        module.insert(table)
        .values(
            kind=kind,
            recipient=recipient,
            about=about,
            context=json.dumps(context, sort_keys=True),
            user_id=user_id,
            created_at=now,
            next_attempt_at=due,
            attempts=0,
        )
        .on_conflict_do_nothing(index_elements=["recipient", "kind", "about"])
        .returning(table.c.id)
    )
    row_id = db.session.execute(statement).scalar()
    if row_id is None:
        return False
    after_commit(_Enqueue(int(row_id), delay))
    return True


@dataclass(frozen=True)
class _Enqueue:
    """The after-commit step of :func:`queue_mail` (a queue that is down leaves the row to the
    sweeper)."""

    row_id: int
    delay: float = 0.0

    def __call__(self) -> None:
        try:
            send = current_app.extensions[QUEUE_EXTENSION].tasks[SEND_TASK]
            if self.delay > 0:
                send.schedule(args=(self.row_id,), delay=self.delay)
            else:
                send(self.row_id)
        except Exception:
            log.warning("could not queue mail %s; the sweeper will send it", self.row_id, exc_info=True)


# --- sending ----------------------------------------------------------------------------------------


def retry_delay(attempts: int) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones (None: give up)."""
    config = current_app.config
    if attempts >= int(config["MAIL_MAX_ATTEMPTS"]):
        return None
    return float(min(float(config["MAIL_RETRY_SECONDS"]) * 2 ** (attempts - 1), 3600.0))


def _claim(row_id: int) -> tuple[str, str, dict[str, Any], int] | None:
    """Take the unsent, due row for one lease (the attempt counted): (kind, to, context, attempts)."""
    now = utcnow()
    lease = timedelta(seconds=float(current_app.config["MAIL_LEASE_SECONDS"]))
    with unit_of_work():
        claimed = db.session.execute(
            update(OutboundMail)
            .where(
                OutboundMail.id == row_id,
                OutboundMail.sent_at.is_(None),
                OutboundMail.next_attempt_at.is_not(None),
                OutboundMail.next_attempt_at <= now,
            )
            .values(next_attempt_at=now + lease, attempts=OutboundMail.attempts + 1)
            .returning(OutboundMail.kind, OutboundMail.recipient, OutboundMail.context, OutboundMail.attempts)
            .execution_options(synchronize_session=False)
        ).first()
    if claimed is None:
        return None
    return claimed.kind, claimed.recipient, json.loads(claimed.context), claimed.attempts


def render(kind: str, to: str, context: dict[str, Any]) -> mailer.Rendered:
    """The mail as it is sent: the kind's templates rendered from ``context`` (and what its
    ``build`` step adds) with ``store_name`` and ``store_url``."""
    spec = MAIL_KINDS[kind]
    config = current_app.config
    values: dict[str, Any] = {"store_name": config["STORE_NAME"], "store_url": config["STORE_URL"], **context}
    if spec.build is not None:
        values.update(spec.build(dict(context)))
    try:
        subject = gettext(spec.subject).format(**values)  # marked with N_ where the kind is registered
    except (KeyError, IndexError, ValueError):
        subject = gettext(spec.subject)
    return mailer.Rendered(
        kind=kind,
        to=to,
        subject=subject,
        text=_render_template(f"mail/{spec.template}.txt", values),
        html=_render_template(f"mail/{spec.template}.html", values),
    )


def _render_template(name: str, values: dict[str, Any]) -> str:
    """Rendered with the app's Jinja environment but none of its context processors: a mail
    knows only its context (no request, no signed-in user, no CSRF token)."""
    return current_app.jinja_env.get_template(name).render(values)


def _finish(row_id: int, *, error: str | None = None, attempts: int = 0, dropped: bool = False) -> None:
    values: dict[str, Any]
    if error is None:
        values = {"sent_at": utcnow(), "next_attempt_at": None, "last_error": None}
    else:
        delay = None if dropped else retry_delay(attempts)
        values = {
            "last_error": error[:ERROR_CHARS],
            "next_attempt_at": None if delay is None else utcnow() + timedelta(seconds=delay),
        }
    with unit_of_work():
        db.session.execute(
            update(OutboundMail)
            .where(OutboundMail.id == row_id, OutboundMail.sent_at.is_(None))
            .values(**values)
            .execution_options(synchronize_session=False)
        )


def send_stored(row_id: int) -> bool:
    """Send outbox row ``row_id`` if it is unsent and due (another worker holding it, or sent
    already: nothing). True if it was sent now. A failure is recorded for a later attempt."""
    claimed = _claim(row_id)
    if claimed is None:
        return False
    kind, to, context, attempts = claimed
    try:
        message = render(kind, to, context)
    except Drop as why:
        read_then_release()
        _finish(row_id, error=f"dropped: {why}", dropped=True)
        log.info("mail %s (%s) dropped: %s", row_id, kind, why)
        return False
    except Exception as err:  # a template or build error: recorded, retried after the backoff
        db.session.rollback()
        _finish(row_id, error=f"{type(err).__name__}: {err}", attempts=attempts)
        log.exception("mail %s (%s) could not be rendered", row_id, kind)
        return False
    read_then_release()  # no transaction open while SMTP is talked to
    try:
        mailer.send(message)
    except (smtplib.SMTPException, OSError, RuntimeError) as err:  # refused, unreachable, timed out
        _finish(row_id, error=f"{type(err).__name__}: {err}", attempts=attempts)
        log.warning("mail %s (%s) not sent (attempt %d): %s", row_id, kind, attempts, type(err).__name__)
        return False
    _finish(row_id)
    log.info("mail %s (%s) sent", row_id, kind)
    return True


def send_due(seconds: float = 50.0, limit: int = 500) -> int:
    """The sweeper: send the unsent mails that are due and older than a minute (their queued job
    was lost, or an attempt failed and its backoff is over). Returns how many were sent."""
    now = utcnow()
    rows = db.session.scalars(
        select(OutboundMail.id)
        .where(
            OutboundMail.sent_at.is_(None),
            OutboundMail.next_attempt_at.is_not(None),
            OutboundMail.next_attempt_at <= now,
            OutboundMail.created_at <= now - SWEEP_AFTER,
        )
        .order_by(OutboundMail.id)
        .limit(limit)
    ).all()
    read_then_release()
    sent = 0
    started = utcnow()
    for row_id in rows:
        if (utcnow() - started).total_seconds() > seconds:
            break
        sent += send_stored(row_id)
    return sent


def prune(older_than: timedelta = KEEP_SENT, limit: int = 1000) -> int:
    """Delete the rows of mails sent (or given up) more than ``older_than`` ago, at most
    ``limit`` per call. Returns how many went."""
    cutoff = utcnow() - older_than
    with unit_of_work():
        ids = db.session.scalars(
            select(OutboundMail.id)
            .where(OutboundMail.next_attempt_at.is_(None), OutboundMail.created_at < cutoff)
            .order_by(OutboundMail.id)
            .limit(limit)
        ).all()
        if ids:
            db.session.execute(delete(OutboundMail).where(OutboundMail.id.in_(ids)))
    return len(ids)
