"""Study completions: ``study_completions``, one row per rater who judged every pair of a study.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07

The Compare page gives a rater who has judged all of a study's pairs a completion code
(unique), shown again whenever they come back; ``rlmusic study report`` lists who finished.
A new table only: nothing to convert, the same DDL on SQLite and PostgreSQL.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "study_completions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("completed_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["rater_id"], ["raters.id"], name=op.f("fk_study_completions_rater_id_raters")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_study_completions_study_id_studies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_completions")),
        sa.UniqueConstraint("code", name=op.f("uq_study_completions_code")),
        sa.UniqueConstraint("study_id", "rater_id", name=op.f("uq_study_completions_study_id_rater_id")),
    )


def downgrade() -> None:
    op.drop_table("study_completions")
