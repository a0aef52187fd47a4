"""The scheduled repairs as queue tasks: each periodic task runs one job of
``services.maintenance.JOBS`` (its schedule comes from there) and records the run.

Every job is idempotent, so two workers whose schedulers both fire, or a "Run now" during a
scheduled run, change nothing more than one run would. The sweeper of stored webhook events is
declared with the other queue tasks (``tasks.sweep_events``) and records its runs the same way.
"""

from __future__ import annotations

from typing import Any

from ..services import maintenance, notifications
from .queue import crontab, periodic_task, task

#: issue 13's reminder: a subscription set to cancel at period end, 3 days before that end
maintenance.register(
    maintenance.Job(
        "renewal_reminders",
        "Remind buyers whose subscription ends in 3 days",
        "every hour",
        {"minute": "35"},
        lambda: maintenance.Outcome(notifications.remind_renewals_ending()),
    )
)


def _every(name: str) -> dict[str, Any]:
    """``periodic_task`` arguments for job ``name``: its crontab and its schedule in words."""
    job = maintenance.JOBS[name]
    return {"schedule": crontab(**job.crontab), "every": job.schedule}


@periodic_task(**_every("reconcile"))
def reconcile() -> None:
    """The last days of Stripe objects applied again (what ``flask reconcile`` does)."""
    maintenance.run_job("reconcile", trigger="schedule")


@periodic_task(**_every("expire_orders"))
def expire_orders() -> None:
    """Unpaid orders older than an hour settled with what Stripe says about them now."""
    maintenance.run_job("expire_orders", trigger="schedule")


@periodic_task(**_every("retry_owed_cancels"))
def retry_owed_cancels() -> None:
    """The Stripe writes owed after a commit (Lifetime ends a subscription), sent again."""
    maintenance.run_job("retry_owed_cancels", trigger="schedule")


@periodic_task(**_every("renewal_reminders"))
def renewal_reminders() -> None:
    """A mail to each buyer whose subscription is set to end within 3 days (once per period)."""
    maintenance.run_job("renewal_reminders", trigger="schedule")


@task()
def run_now(name: str, trigger: str) -> None:
    """One run of job ``name`` asked for by someone (the admin's "Run now")."""
    maintenance.run_job(name, trigger=trigger)
