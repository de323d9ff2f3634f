"""Ledger: where each call came from (a CDS client, the built-in /sandbox page, `cds-service simulate`).

Cards the sandbox page or the simulate command produced were counted in the feedback report as if a clinician had
seen them in an EHR, and deflated acceptance. Rows written before this revision came from whatever called; they are
marked `ehr`, as the report would have counted them.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="ehr"))


def downgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.drop_column("source")
