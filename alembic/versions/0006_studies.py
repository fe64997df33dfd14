"""Invited raters with a researcher role, and blind A/B studies with gold checks.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02

``raters`` gains ``researcher``, ``invite_sha256`` (the SHA-256 of the invite token: the
token itself is never stored), ``invited_at`` and ``revoked_at``; ``clips`` gains
``broken`` (the deliberately broken melody of a gold check); ``studies`` and
``study_pairs`` are new. Raters stored before this revision have no invite: the app lets
them in only in its open demo mode (``rlmusic app --open``) until they are invited.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


# Plain ALTER TABLE ADD/DROP COLUMN on both backends, as in 0004: batch mode would copy the
# raters and clips tables, which the judgements' foreign keys forbid once there are any.
# A unique index (not a constraint) makes invite hashes unique: SQLite can add one in place.


def upgrade() -> None:
    op.add_column("raters", sa.Column("researcher", sa.Boolean(), server_default=sa.false(), nullable=False))
    op.add_column("raters", sa.Column("invite_sha256", sa.String(length=64), nullable=True))
    op.add_column("raters", sa.Column("invited_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("raters", sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_raters_invite_sha256"), "raters", ["invite_sha256"], unique=True)
    op.add_column("clips", sa.Column("broken", sa.Boolean(), server_default=sa.false(), nullable=False))

    op.create_table(
        "studies",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("model_a_id", sa.Integer(), nullable=False),
        sa.Column("model_b_id", sa.Integer(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("seed", sa.BigInteger(), nullable=False),
        sa.Column("folder", sa.String(length=1024), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("steps > 0", name=op.f("ck_studies_steps_positive")),
        sa.ForeignKeyConstraint(["model_a_id"], ["models.id"], name=op.f("fk_studies_model_a_id_models")),
        sa.ForeignKeyConstraint(["model_b_id"], ["models.id"], name=op.f("fk_studies_model_b_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_studies")),
        sa.UniqueConstraint("name", name=op.f("uq_studies_name")),
    )
    op.create_table(
        "study_pairs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("study_id", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("gold", sa.Boolean(), nullable=False),
        sa.Column("clip_a_id", sa.Integer(), nullable=False),
        sa.Column("clip_b_id", sa.Integer(), nullable=False),
        sa.Column("swap", sa.Boolean(), nullable=False),
        sa.Column("pair_lo", sa.Integer(), nullable=False),
        sa.Column("pair_hi", sa.Integer(), nullable=False),
        sa.CheckConstraint("clip_a_id <> clip_b_id", name=op.f("ck_study_pairs_distinct_clips")),
        sa.ForeignKeyConstraint(["clip_a_id"], ["clips.id"], name=op.f("fk_study_pairs_clip_a_id_clips")),
        sa.ForeignKeyConstraint(["clip_b_id"], ["clips.id"], name=op.f("fk_study_pairs_clip_b_id_clips")),
        sa.ForeignKeyConstraint(["study_id"], ["studies.id"], name=op.f("fk_study_pairs_study_id_studies"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_study_pairs")),
        sa.UniqueConstraint("study_id", "pair_lo", "pair_hi", name=op.f("uq_study_pairs_study_id_pair_lo_pair_hi")),
    )
    op.create_index("ix_study_pairs_order", "study_pairs", ["study_id", "position"], unique=False)
    op.create_index("ix_study_pairs_pair", "study_pairs", ["pair_lo", "pair_hi"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_study_pairs_pair", table_name="study_pairs")
    op.drop_index("ix_study_pairs_order", table_name="study_pairs")
    op.drop_table("study_pairs")
    op.drop_table("studies")
    op.drop_column("clips", "broken")
    op.drop_index(op.f("ix_raters_invite_sha256"), table_name="raters")
    for column in ("revoked_at", "invited_at", "invite_sha256", "researcher"):
        op.drop_column("raters", column)
