"""The store's own tasks: process a stored webhook event, and the sweeper."""

from __future__ import annotations

from ..services import maintenance, webhooks
from .queue import crontab, periodic_task, task


@task()
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
