"""Scheduled jobs: the repairs that run by themselves, each recorded as a :class:`JobRun`.

Every job is a plain service function that is **idempotent** (a second run, or two at once,
changes nothing more) and returns an :class:`Outcome` (a short summary, and the errors of the
objects it could not handle). :func:`run_job` is the one way to run a job -- from the queue's
periodic tasks, ``flask jobs run NAME`` or the admin's "Run now" button -- and records the run:
a ``running`` row first (committed, so a run that dies half-way stays visible), then ``ok`` or
``failed`` with the summary and the error text. Only the newest :data:`KEEP_RUNS` runs of each
job are kept.

**One run of a job at a time.** Two workers' schedulers, a slow run and the next one, or "Run now"
during a scheduled run could run a job twice at once. The ``running`` row is the lock: a partial
unique index allows one per job (``uq_job_runs_running``), so a second run's insert fails and
that run is recorded as ``skipped`` (not an error). The lock is a lease: a ``running`` row older
than the job's :attr:`Job.lease` belonged to a worker that was killed, and the next run closes it
as failed and takes the lock. Why the database and not Huey's ``lock_task``: Huey's lock expires
only with a TTL, which its SQLite storage refuses and its Redis storage supports only on Redis
7.4+, so a killed worker's lock would block the job until someone flushed it (flushing at a
worker's start would free the locks of workers still running elsewhere); and "Run now" runs in the
request when the queue's storage is down, where a lock kept in that storage can't be taken. The
row is written anyway, the database is shared by every worker, and the lock's holder is what the
admin sees (who started it, when).

The jobs (schedules in :data:`JOBS`; the queue declares them from there):

* ``reconcile`` -- the last few days of Stripe objects applied again (:mod:`.reconcile`, what
  ``flask reconcile`` does), ending with the owed Stripe writes;
* ``expire_orders`` -- unpaid orders older than an hour settled with what Stripe says now
  (:mod:`.stale_orders`: canceled, expired, gone, or paid after a lost webhook);
* ``retry_owed_cancels`` -- the Stripe writes owed after a commit and not yet sent (a Lifetime
  purchase ends the buyer's subscription: :func:`.subscription_sync.finish_pending_cancels`);
* ``sweep_events`` -- stored webhook events whose next attempt is due (the queue's sweeper:
  :func:`.webhooks.process_due`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.exc import IntegrityError

from ..extensions import db
from ..models import JobRun, Subscription
from ..models.base import utcnow
from . import reconcile, stale_orders, subscription_sync, webhooks
from .errors import NotFound
from .uow import unit_of_work

log = logging.getLogger(__name__)

#: runs kept per job (older ones are deleted when a run finishes)
KEEP_RUNS = 100
#: how much error text a run keeps
ERROR_CHARS = 4000
#: a run still ``running`` after this long died with its worker: the next run marks it failed
#: and runs (a job's default :attr:`Job.lease`)
ABANDONED_AFTER = timedelta(hours=1)
#: the days reconciled by the scheduled run (``flask reconcile --days`` for more)
RECONCILE_DAYS = 3


@dataclass
class Outcome:
    """What a job did: ``summary`` for the admin's table; ``errors`` make the run ``failed``."""

    summary: str
    errors: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Job:
    name: str
    title: str
    #: the schedule in words, for the admin page
    schedule: str
    #: Huey ``crontab()`` arguments (minute, hour, …) that say the same
    crontab: dict[str, str]
    run: Callable[[], Outcome]
    #: how long a run holds the job's lock: a run still ``running`` after that died with its worker
    lease: timedelta = ABANDONED_AFTER


# --- the jobs -------------------------------------------------------------------------------------


def reconcile_recent() -> Outcome:
    """The last :data:`RECONCILE_DAYS` days against Stripe (refused or unlistable: raises)."""
    report = reconcile.reconcile(RECONCILE_DAYS)
    return Outcome(report.summary(), list(report.errors))


def expire_stale_orders() -> Outcome:
    report = stale_orders.settle_stale_orders()
    return Outcome(report.summary(), report.errors)


def retry_owed_cancels() -> Outcome:
    """Send the owed subscription cancels; one still owed (Stripe failed again) fails the run,
    with the error its row recorded."""
    sent, pending = subscription_sync.finish_pending_cancels()
    summary = f"{sent} owed subscription cancel(s) sent" + (f", {pending} still owed" if pending else "") + "."
    errors: list[str] = []
    if pending:
        rows = db.session.execute(
            select(Subscription.stripe_subscription_id, Subscription.pending_cancel_error)
            .where(Subscription.pending_cancel.is_not(None))
            .order_by(Subscription.pending_cancel_since)
            .limit(20)
        ).all()
        db.session.commit()
        errors = [f"{sub_id}: {error or 'not sent yet'}" for sub_id, error in rows]
    return Outcome(summary, errors)


def sweep_events() -> Outcome:
    """Stored webhook events never queued (the queue was down), left by a killed worker, or
    failed and due for their retry."""
    return Outcome(webhooks.process_due())


JOBS: dict[str, Job] = {}


def register(job: Job) -> Job:
    """Add (or replace) a job in :data:`JOBS`: the queue schedules it, the admin lists it."""
    JOBS[job.name] = job
    return job


register(Job("reconcile", "Reconcile with Stripe", "every 15 minutes", {"minute": "*/15"}, reconcile_recent))
register(
    Job(
        "expire_orders",
        "Settle stale unpaid orders",
        "every 15 minutes (orders older than an hour)",
        {"minute": "5-59/15"},
        expire_stale_orders,
    )
)
register(
    Job(
        "retry_owed_cancels",
        "Retry owed Stripe writes (Lifetime ends subscriptions)",
        "every 5 minutes",
        {"minute": "*/5"},
        retry_owed_cancels,
    )
)
register(
    Job(
        "sweep_events",
        "Process due webhook events",
        "every minute",
        {"minute": "*"},
        sweep_events,
        lease=timedelta(minutes=5),  # a run stops taking events after 50 s
    )
)


def job(name: str) -> Job:
    found = JOBS.get(name)
    if found is None:
        raise NotFound(f"There is no job {name!r}.", code="job_not_found")
    return found


# --- running and recording ------------------------------------------------------------------------


def run_job(name: str, *, trigger: str) -> JobRun:
    """Run job ``name`` now and record the run; returns the finished row. Never raises for the
    job's own failure (it is recorded as ``failed``); an unknown name raises :class:`NotFound`.
    Another run of the job holding its lock: nothing runs, the run is recorded as ``skipped``."""
    the_job = job(name)
    run_id = _start(the_job, trigger)
    if run_id is None:
        return _skip(name, trigger)
    try:
        outcome = the_job.run()
    except Exception as err:  # recorded, not raised: a scheduled run has no one to raise to
        db.session.rollback()
        log.exception("job %s failed", name)
        return _finish(run_id, "failed", None, f"{type(err).__name__}: {err}")
    if outcome.errors:
        log.warning("job %s: %d error(s)", name, len(outcome.errors))
    return _finish(run_id, "failed" if outcome.errors else "ok", outcome.summary, "\n".join(outcome.errors) or None)


def _start(the_job: Job, trigger: str) -> int | None:
    """Take the job's lock: its ``running`` row, committed (None: another run holds it)."""
    try:
        with unit_of_work():
            _close_abandoned(the_job)
            row = JobRun(job=the_job.name, trigger=trigger[:120], outcome="running", started_at=utcnow())
            db.session.add(row)
            db.session.flush()
            return row.id
    except IntegrityError:  # uq_job_runs_running: a run of this job is running
        return None


def _skip(name: str, trigger: str) -> JobRun:
    holder = running(name)
    since = f" since {holder.started_at:%Y-%m-%d %H:%M:%S} UTC ({holder.trigger})" if holder else ""
    with unit_of_work():
        now = utcnow()
        row = JobRun(job=name, trigger=trigger[:120], outcome="skipped", started_at=now, finished_at=now)
        row.summary = f"Skipped: another run was running{since}."[:255]
        db.session.add(row)
        db.session.flush()
        run_id = row.id
        _prune(name)
    log.info("job %s (%s): skipped, another run holds its lock%s", name, trigger, since)
    return db.session.get_one(JobRun, run_id)


def running(name: str) -> JobRun | None:
    """The run of job ``name`` holding its lock (running, within the job's lease), if any."""
    lease = JOBS[name].lease if name in JOBS else ABANDONED_AFTER
    return db.session.scalar(
        select(JobRun).where(JobRun.job == name, JobRun.outcome == "running", JobRun.started_at >= utcnow() - lease)
    )


def _finish(run_id: int, outcome: str, summary: str | None, error: str | None) -> JobRun:
    with unit_of_work():
        row = db.session.get_one(JobRun, run_id)
        row.outcome = outcome
        row.finished_at = utcnow()
        row.summary = summary[:255] if summary else None
        row.error = error[:ERROR_CHARS] if error else None
        name, trigger = row.job, row.trigger
        _prune(name)
    log.info("job %s (%s): %s %s", name, trigger, outcome, summary or error)
    return db.session.get_one(JobRun, run_id)


def _close_abandoned(the_job: Job) -> None:
    """Runs of the job that never finished within its lease (their worker was killed) show as
    failed; that frees the job's lock."""
    db.session.execute(
        update(JobRun)
        .where(
            JobRun.job == the_job.name,
            JobRun.outcome == "running",
            JobRun.started_at < utcnow() - the_job.lease,
        )
        .values(outcome="failed", error="Did not finish: its worker stopped during the run.")
        .execution_options(synchronize_session=False)
    )


def _prune(name: str) -> None:
    """Keep the newest :data:`KEEP_RUNS` runs of job ``name``."""
    oldest_kept = db.session.scalar(
        select(JobRun.id).where(JobRun.job == name).order_by(JobRun.id.desc()).offset(KEEP_RUNS - 1).limit(1)
    )
    if oldest_kept is not None:
        db.session.execute(delete(JobRun).where(JobRun.job == name, JobRun.id < oldest_kept))


# --- what the admin page shows --------------------------------------------------------------------


@dataclass(frozen=True)
class JobStatus:
    job: Job
    last: JobRun | None
    #: the newest finished run that went well (when the last one failed, how long ago it worked)
    last_ok: JobRun | None


def overview() -> list[JobStatus]:
    """Each job with its newest run (a skipped one aside: the run it gave way to says more) and
    its newest ``ok`` run (two queries over the index)."""
    newest = select(func.max(JobRun.id)).where(JobRun.outcome != "skipped").group_by(JobRun.job).scalar_subquery()
    newest_ok = select(func.max(JobRun.id)).where(JobRun.outcome == "ok").group_by(JobRun.job).scalar_subquery()
    last = {r.job: r for r in db.session.scalars(select(JobRun).where(JobRun.id.in_(newest)))}
    ok = {r.job: r for r in db.session.scalars(select(JobRun).where(JobRun.id.in_(newest_ok)))}
    return [JobStatus(j, last.get(j.name), ok.get(j.name)) for j in JOBS.values()]


def recent_runs(limit: int = 30, *, name: str | None = None) -> list[JobRun]:
    query = select(JobRun).order_by(JobRun.id.desc()).limit(limit)
    if name is not None:
        query = query.where(JobRun.job == name)
    return list(db.session.scalars(query))
