"""The store's own tasks: process a stored webhook event, send an owed mail, and their sweepers."""

from __future__ import annotations

from ..services import account_mail, mail, maintenance, webhooks
from .queue import crontab, periodic_task, task

#: waiting payments' events run before other tasks (the mails they owe, a reset request)
EVENT_PRIORITY = 10


@task(priority=EVENT_PRIORITY)
def process_event(event_row_id: int) -> None:
    """Process one stored Stripe event (queued by the webhook view after its commit); does
    nothing when the event is not due (processed, or held by another worker)."""
    webhooks.process_stored(event_row_id)


@periodic_task(crontab(minute="*"), every="every minute")
def sweep_events() -> None:
    """Process every stored event whose next attempt is due: deliveries stored while the queue
    was down, events of a worker killed mid-event, failed ones due for a retry. The run is
    recorded (job ``sweep_events``, ``services.maintenance``) and shown in the admin."""
    maintenance.run_job("sweep_events", trigger="schedule")


@task()
def send_mail(row_id: int) -> None:
    """Send one owed mail (``services.mail``: queued after the commit of the unit that owed it);
    nothing when it was sent already or another worker holds it. A failure is recorded on the
    row and left to the sweeper's backoff (no Huey retry: the row is the one source of truth)."""
    mail.send_stored(row_id)


@periodic_task(crontab(minute="*"), every="every minute")
def sweep_mails() -> None:
    """Send the owed mails that are due and older than a minute: queued while the queue was
    down, lost with a killed worker, or failed and waiting for their next attempt; and forget
    the mails sent more than 90 days ago."""
    mail.send_due()
    mail.prune()


@task()
def request_password_reset(email: str) -> None:
    """A "Forgot password?" request: owe the account at ``email`` a reset link (nothing for an
    unknown address). Queued by the view for every request, so its answer's timing says nothing
    about whether the address has an account."""
    account_mail.request_password_reset(email)
