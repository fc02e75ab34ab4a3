"""The projection of the ledger's reservations, transfers and holds, for ``omnistock rebuild``.

Revision ID: 0003
Revises: 0002
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "ledger_documents",
        sa.Column("doc_id", sa.String(64), primary_key=True),
        sa.Column("part", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("kind", sa.String(1), nullable=False),
        sa.Column("status", sa.String(1), nullable=False),
        sa.Column("is_open", sa.Boolean, nullable=False),
        sa.Column("raw", sa.Text, nullable=False),
        sa.Column("deadline_ms", sa.BigInteger, nullable=True),
        sa.Column("expires_at_ms", sa.BigInteger, nullable=True),
        sa.Column("seen", sa.String(48), nullable=False),
        sa.Column("updated_at_ms", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_ledger_documents_open", "ledger_documents", ["is_open", "kind"])


def downgrade() -> None:
    op.drop_index("ix_ledger_documents_open", "ledger_documents")
    op.drop_table("ledger_documents")
