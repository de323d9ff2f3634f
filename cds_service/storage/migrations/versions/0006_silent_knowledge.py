"""Silent mode: cards a silent knowledge version would have shown, and each call it was evaluated on.

A knowledge owner runs a changed version silently before turning it on (cds_service/silent.py): its cards go in the
ledger marked `silent` (the acceptance report leaves them out: nobody saw them), and `silent_call` keeps, per call,
which card types each version gave, so the report can say how often each would fire per 100 calls and which cards the
new version adds or drops. No patient or user is recorded in `silent_call`.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.add_column(sa.Column("silent", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.create_table(
        "silent_call",
        sa.Column("call_uuid", sa.String(36), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(32), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("evaluated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("live_version", sa.String(64), nullable=False),
        sa.Column("silent_version", sa.String(64), nullable=False),
        sa.Column("live_card_types", sa.String(1024), nullable=False),
        sa.Column("silent_card_types", sa.String(1024), nullable=False),
        sa.PrimaryKeyConstraint("call_uuid", name=op.f("pk_silent_call")),
    )
    op.create_index(op.f("ix_silent_call_evaluated_at"), "silent_call", ["evaluated_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_silent_call_evaluated_at"), table_name="silent_call")
    op.drop_table("silent_call")
    with op.batch_alter_table("issued_card") as batch:
        batch.drop_column("silent")
