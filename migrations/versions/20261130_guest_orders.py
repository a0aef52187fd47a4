"""orders.buyer_email and a nullable orders.user_id: guest checkout (issue 14)

Revision ID: 20261130_guest_orders
Revises: 20261130_job_lock_event_state
Create Date: 2026-11-30 00:40:00

A guest order (POST /api/create-checkout-session with no session) belongs to the email Stripe
Checkout collected (``buyer_email``) and has no account (``user_id`` NULL) until an account with
that VERIFIED address claims it (services/guest_orders.py). Existing orders keep their user and
get no buyer_email. The downgrade refuses while guest orders exist (NOT NULL again).
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "20261130_guest_orders"
down_revision = "20261130_job_lock_event_state"
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.add_column(sa.Column("buyer_email", sa.String(length=254), nullable=True))
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=True)
        batch_op.create_index("ix_orders_buyer_email", ["buyer_email"], unique=False)


def downgrade():
    with op.batch_alter_table("orders", schema=None) as batch_op:
        batch_op.drop_index("ix_orders_buyer_email")
        batch_op.alter_column("user_id", existing_type=sa.Integer(), nullable=False)
        batch_op.drop_column("buyer_email")
