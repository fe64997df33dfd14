"""The app's settings other commands read: ``app_settings`` (key, value, updated_at).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07

``rlmusic app --public-url URL`` stores the address raters reach the app at
(``public_url``) so ``rlmusic raters invite`` builds its links with it. A new table only:
nothing to convert, the same DDL on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "app_settings",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_app_settings")),
    )


def downgrade() -> None:
    op.drop_table("app_settings")
