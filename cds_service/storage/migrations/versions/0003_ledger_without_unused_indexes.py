"""Ledger: drop the indexes no query reads.

The ledger is written on every hook call that returns cards and read only by the feedback report, which reads whole
tables (and `issued_card` by `issued_at` for `--since`). The indexes on `issued_card.card_type`,
`issued_card.knowledge_version` and `issued_suggestion.card_uuid` served no query, and every issued card and
suggestion paid a b-tree insert into each: five b-trees per card and three per suggestion, now three and two. Under
callgrind (SQLite, patient-view at 100 resources, ledger writes on against off, a few runs each) the writes took about
0.35M instructions per request before and about 0.2M after, of some 10M. The rows are kept; a deployment that queries
the ledger by card type can add its own index.

Revision ID: 0003
Revises: 0002
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_issued_card_card_type", table_name="issued_card")
    op.drop_index("ix_issued_card_knowledge_version", table_name="issued_card")
    op.drop_index("ix_issued_suggestion_card_uuid", table_name="issued_suggestion")


def downgrade() -> None:
    op.create_index("ix_issued_suggestion_card_uuid", "issued_suggestion", ["card_uuid"])
    op.create_index("ix_issued_card_knowledge_version", "issued_card", ["knowledge_version"])
    op.create_index("ix_issued_card_card_type", "issued_card", ["card_type"])
