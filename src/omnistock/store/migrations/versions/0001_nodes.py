"""The node catalog.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nodes",
        sa.Column("node_id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("lat", sa.Float, nullable=False),
        sa.Column("lon", sa.Float, nullable=False),
        sa.Column("ships", sa.Boolean, nullable=False),
        sa.Column("pickup", sa.Boolean, nullable=False),
        sa.Column("capacity_per_day", sa.Integer, nullable=True),
        sa.Column("priority", sa.Integer, nullable=False),
        sa.Column("cost_per_shipment", sa.Float, nullable=False),
        sa.Column("cost_per_km", sa.Float, nullable=False),
        sa.Column("cost_per_unit", sa.Float, nullable=False),
        sa.Column("pickup_ready_minutes", sa.Integer, nullable=False),
        sa.Column("changed_ns", sa.BigInteger, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("nodes")
