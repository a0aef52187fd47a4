"""stripe_events.next_attempt_at: when a worker or the sweeper may process a stored event next

Revision ID: 20261129_event_retries
Revises: 20261129_job_runs
Create Date: 2026-11-29 21:50:00

Events stored unprocessed before this revision (failed under the old inline processing) get no
next attempt: they show as failed in the admin, which can replay them.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "20261129_event_retries"
down_revision = "20261129_job_runs"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index("ix_stripe_events_next_attempt", ["next_attempt_at"], unique=False)


def downgrade():
    with op.batch_alter_table("stripe_events", schema=None) as batch_op:
        batch_op.drop_index("ix_stripe_events_next_attempt")
        batch_op.drop_column("next_attempt_at")
