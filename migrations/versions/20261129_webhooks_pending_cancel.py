"""subscriptions: a pending cancel (a Stripe write owed after commit, retried until it holds)

Revision ID: 20261129_wh_pending_cancel
Revises: f5e0b06ef9fd
Create Date: 2026-11-29 18:00:00

"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "20261129_wh_pending_cancel"
down_revision = "f5e0b06ef9fd"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("pending_cancel", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("pending_cancel_since", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("pending_cancel_attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("pending_cancel_error", sa.String(length=255), nullable=True))
        batch_op.create_index("ix_subscriptions_pending_cancel", ["pending_cancel_since"], unique=False)


def downgrade():
    with op.batch_alter_table("subscriptions", schema=None) as batch_op:
        batch_op.drop_index("ix_subscriptions_pending_cancel")
        batch_op.drop_column("pending_cancel_error")
        batch_op.drop_column("pending_cancel_attempts")
        batch_op.drop_column("pending_cancel_since")
        batch_op.drop_column("pending_cancel")
