"""One run of a scheduled job (reconcile, expire stale orders, retry owed Stripe writes, sweep
stored webhook events): when it started and finished, how it ended, what it did.

A row is written ``running`` when the run starts and finished with ``ok`` or ``failed``, a short
summary ("3 orders repaired") and the error text, so the admin's jobs page shows the last run and
result of each job, and a run that died half-way stays visible as ``running`` from its start.
Only the newest runs of each job are kept (``services.maintenance``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import CheckConstraint, Index, Integer, String, Text, text
from sqlalchemy.orm import Mapped, mapped_column

from ..extensions import Model
from .base import UTCDateTime, utcnow

#: how a run ended (``running``: not yet, or the process died during it; ``skipped``: another
#: run of the job was running, so this one did nothing)
OUTCOMES = ("running", "ok", "failed", "skipped")
#: a job's running run is its overlap lock: at most one per job (``services.maintenance.run_job``)
_RUNNING = text("outcome = 'running'")


class JobRun(Model):
    __tablename__ = "job_runs"
    __table_args__ = (
        CheckConstraint("outcome in ('" + "', '".join(OUTCOMES) + "')", name="outcome"),
        # the jobs page: each job's newest runs
        Index("ix_job_runs_job_started", "job", "started_at"),
        Index("uq_job_runs_running", "job", unique=True, sqlite_where=_RUNNING, postgresql_where=_RUNNING),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    job: Mapped[str] = mapped_column(String(64))
    #: ``schedule``, ``cli``, ``admin:<email>``
    trigger: Mapped[str] = mapped_column(String(120))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), nullable=True)
    outcome: Mapped[str] = mapped_column(String(16), default="running")
    summary: Mapped[str | None] = mapped_column(String(255), nullable=True)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)

    @property
    def seconds(self) -> float | None:
        """How long the run took (None while running)."""
        if self.finished_at is None:
            return None
        return (self.finished_at - self.started_at).total_seconds()
