"""The journal of ledger events.

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
        "events",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer, "sqlite"),
            primary_key=True,
            autoincrement=True,
        ),
        sa.Column("event_id", sa.String(64), nullable=False, unique=True),
        sa.Column("at_ms", sa.BigInteger, nullable=False),
        sa.Column("op_id", sa.String(600), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("node_id", sa.String(64), nullable=False),
        sa.Column("sku", sa.String(64), nullable=False),
        sa.Column("d_on_hand", sa.BigInteger, nullable=False),
        sa.Column("d_reserved", sa.BigInteger, nullable=False),
        sa.Column("d_held", sa.BigInteger, nullable=False),
        sa.Column("d_inbound", sa.BigInteger, nullable=False),
        sa.Column("on_hand", sa.BigInteger, nullable=False),
        sa.Column("reserved", sa.BigInteger, nullable=False),
        sa.Column("held", sa.BigInteger, nullable=False),
        sa.Column("safety_stock", sa.BigInteger, nullable=False),
        sa.Column("inbound", sa.BigInteger, nullable=False),
        sa.Column("version", sa.BigInteger, nullable=False),
        sa.Column("ref", sa.String(200), nullable=False),
    )
    op.create_index("ix_events_position", "events", ["node_id", "sku", "seq"])


def downgrade() -> None:
    op.drop_index("ix_events_position", "events")
    op.drop_table("events")
