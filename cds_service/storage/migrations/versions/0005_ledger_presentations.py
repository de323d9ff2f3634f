"""Ledger: the user (keyed hash) and a digest of each card's content, so the report counts presentations.

In an order-select session every change of the selection calls the service again, and every call issues new card
uuids (as CDS Hooks requires): one session that ended with one accepted card counted four cards issued and two with no
response. With who saw the card and what it said, the report counts the same card shown again as one presentation.
Rows written before this revision have neither: each is its own presentation, as before.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.add_column(sa.Column("user_hash", sa.String(64), nullable=True))
        batch.add_column(sa.Column("content_digest", sa.String(64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("issued_card") as batch:
        batch.drop_column("content_digest")
        batch.drop_column("user_hash")
