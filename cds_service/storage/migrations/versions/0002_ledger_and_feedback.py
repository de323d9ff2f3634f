"""Issued-card ledger, issued suggestions and feedback.

Revision ID: 0002
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "issued_card",
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("card_type", sa.String(64), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("hook", sa.String(32), nullable=False),
        sa.Column("hook_instance", sa.String(255), nullable=False),
        sa.Column("knowledge_version", sa.String(64), nullable=False),
        sa.Column("patient_hash", sa.String(64), nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("card_uuid", name="pk_issued_card"),
    )
    op.create_index("ix_issued_card_card_type", "issued_card", ["card_type"])
    op.create_index("ix_issued_card_knowledge_version", "issued_card", ["knowledge_version"])
    op.create_index("ix_issued_card_issued_at", "issued_card", ["issued_at"])
    op.create_table(
        "issued_suggestion",
        sa.Column("suggestion_uuid", sa.String(36), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("label", sa.String(255), nullable=False),
        sa.ForeignKeyConstraint(["card_uuid"], ["issued_card.card_uuid"], name="fk_issued_suggestion_card_uuid"),
        sa.PrimaryKeyConstraint("suggestion_uuid", name="pk_issued_suggestion"),
    )
    op.create_index("ix_issued_suggestion_card_uuid", "issued_suggestion", ["card_uuid"])
    op.create_table(
        "feedback",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("dedupe_key", sa.String(64), nullable=False),
        sa.Column("card_uuid", sa.String(36), nullable=False),
        sa.Column("service_id", sa.String(128), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("outcome_timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("accepted_suggestions", sa.Text(), nullable=False),
        sa.Column("override_system", sa.String(255), nullable=True),
        sa.Column("override_code", sa.String(128), nullable=True),
        sa.Column("override_display", sa.String(255), nullable=True),
        sa.Column("has_comment", sa.Boolean(), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_feedback"),
        sa.UniqueConstraint("dedupe_key", name="uq_feedback_dedupe_key"),
    )
    op.create_index("ix_feedback_card_uuid", "feedback", ["card_uuid"])


def downgrade() -> None:
    op.drop_index("ix_feedback_card_uuid", table_name="feedback")
    op.drop_table("feedback")
    op.drop_index("ix_issued_suggestion_card_uuid", table_name="issued_suggestion")
    op.drop_table("issued_suggestion")
    op.drop_index("ix_issued_card_issued_at", table_name="issued_card")
    op.drop_index("ix_issued_card_knowledge_version", table_name="issued_card")
    op.drop_index("ix_issued_card_card_type", table_name="issued_card")
    op.drop_table("issued_card")
