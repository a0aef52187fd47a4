"""subscriptions.wrote_at: when the answer to our own last write of the subscription arrived

Revision ID: 20261129_sub_wrote_at
Revises: 20261129_event_retries
Create Date: 2026-11-29 21:55:00

A Stripe read (a webhook's re-fetch, a sync) that was sent before that moment may have been
answered from the state before our write: it no longer overwrites it.
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "20261129_sub_wrote_at"
down_revision = "20261129_event_retries"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("wrote_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_column("wrote_at")
