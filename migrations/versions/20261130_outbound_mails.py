"""outbound_mails (the mail outbox) and users.email_verified_at (issue 13)

Revision ID: 20261130_outbound_mails
Revises: 20261129_sub_wrote_at
Create Date: 2026-11-30 00:00:00

Existing accounts stay unverified (email_verified_at NULL): nobody has proven they own the
address yet, and what verification unlocks (changing the email, claiming orders) must not be
open to an account made with someone else's address. They can buy as before and verify from
the account page ("Send the verification link again").
"""

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = "20261130_outbound_mails"
down_revision = "20261129_sub_wrote_at"
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        "outbound_mails",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("recipient", sa.String(length=254), nullable=False),
        sa.Column("about", sa.String(length=255), nullable=False),
        sa.Column("context", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("sent_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_outbound_mails_user_id_users"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbound_mails")),
        sa.UniqueConstraint("recipient", "kind", "about", name="uq_outbound_mails_recipient_kind_about"),
    )
    with op.batch_alter_table("outbound_mails", schema=None) as batch_op:
        batch_op.create_index("ix_outbound_mails_next_attempt", ["next_attempt_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_outbound_mails_user_id"), ["user_id"], unique=False)
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(sa.Column("email_verified_at", sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("email_verified_at")
    with op.batch_alter_table("outbound_mails", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_outbound_mails_user_id"))
        batch_op.drop_index("ix_outbound_mails_next_attempt")
    op.drop_table("outbound_mails")
