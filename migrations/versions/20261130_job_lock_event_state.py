"""job_runs: at most one running run per job (the overlap lock), and a ``skipped`` outcome;
stripe_events: an index of the failed events (the admin's count and filter)

Revision ID: 20261130_job_lock_event_state
Revises: 20261130_outbound_mails
Create Date: 2026-11-30 00:00:00

A run of a scheduled job inserts its ``running`` row first; the partial unique index makes a
second one for the same job fail while the first is running, and that run is recorded as
``skipped`` (services.maintenance). Runs left ``running`` by an overlap before this revision are
closed as failed, all but the newest of each job, so the index can be built.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "20261130_job_lock_event_state"
down_revision = "20261130_outbound_mails"
branch_labels = None
depends_on = None

RUNNING = sa.text("outcome = 'running'")
FAILED = sa.text("processed_at IS NULL AND next_attempt_at IS NULL")


def upgrade():
    op.execute(
        "UPDATE job_runs SET outcome = 'failed', error = 'Did not finish: another run of the job overlapped it.' "
        "WHERE outcome = 'running' AND id NOT IN "
        "(SELECT max(id) FROM job_runs WHERE outcome = 'running' GROUP BY job)"
    )
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_job_runs_outcome"), type_="check")
        batch_op.create_check_constraint(
            batch_op.f("ck_job_runs_outcome"), "outcome in ('running', 'ok', 'failed', 'skipped')"
        )
    op.create_index(
        "uq_job_runs_running", "job_runs", ["job"], unique=True, sqlite_where=RUNNING, postgresql_where=RUNNING
    )
    op.create_index("ix_stripe_events_failed", "stripe_events", ["id"], sqlite_where=FAILED, postgresql_where=FAILED)


def downgrade():
    op.drop_index("ix_stripe_events_failed", table_name="stripe_events")
    op.drop_index("uq_job_runs_running", table_name="job_runs")
    op.execute("DELETE FROM job_runs WHERE outcome = 'skipped'")
    with op.batch_alter_table("job_runs", schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f("ck_job_runs_outcome"), type_="check")
        batch_op.create_check_constraint(batch_op.f("ck_job_runs_outcome"), "outcome in ('running', 'ok', 'failed')")
