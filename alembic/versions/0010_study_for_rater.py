"""Studies for one rater: ``studies.for_rater_id``.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-08

``rlmusic study create NAME --for RATER`` makes a study whose pairs only that rater is
served (their own model against the population's, blind); NULL, as every study before,
serves everyone. One nullable column with its foreign key (batch mode, for SQLite).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.add_column(sa.Column("for_rater_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(op.f("fk_studies_for_rater_id_raters"), "raters", ["for_rater_id"], ["id"])


def downgrade() -> None:
    with op.batch_alter_table("studies") as batch:
        batch.drop_constraint(op.f("fk_studies_for_rater_id_raters"), type_="foreignkey")
        batch.drop_column("for_rater_id")
