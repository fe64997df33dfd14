"""Initial schema: raters, models, clips, ratings (+ history), comparisons, jobs, rounds.

Revision ID: 0001
Revises:
Create Date: 2026-11-24

Written by autogenerate from ``db/models.py`` and reviewed: types are spelled as plain
``sa`` types (never imported from ``db``, so this file stays valid when models change),
and ``ix_clips_queue_priority`` sorts ``priority DESC`` (next_clip's priority order).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')",
            name=op.f("ck_jobs_status"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_jobs")),
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_jobs_created_at"), ["created_at"], unique=False)

    op.create_table(
        "models",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("directory", sa.String(length=1024), nullable=False),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("provenance", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("kind IN ('prior', 'tuned')", name=op.f("ck_models_kind")),
        sa.ForeignKeyConstraint(
            ["parent_id"], ["models.id"], name=op.f("fk_models_parent_id_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_models")),
        sa.UniqueConstraint("directory", name=op.f("uq_models_directory")),
    )
    op.create_table(
        "raters",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_raters")),
        sa.UniqueConstraint("name", name=op.f("uq_raters_name")),
    )
    op.create_table(
        "clips",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("model_id", sa.Integer(), nullable=False),
        sa.Column("tokens", sa.JSON(), nullable=False),
        sa.Column("steps", sa.Integer(), nullable=False),
        sa.Column("midi_path", sa.String(length=1024), nullable=False),
        sa.Column("audio_path", sa.String(length=1024), nullable=True),
        sa.Column("seed", sa.BigInteger(), nullable=True),
        sa.Column("priority", sa.Float(), server_default="0", nullable=False),
        sa.Column("n_ratings", sa.Integer(), server_default="0", nullable=False),
        sa.Column("n_comparisons", sa.Integer(), server_default="0", nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("steps > 0", name=op.f("ck_clips_steps_positive")),
        sa.ForeignKeyConstraint(["model_id"], ["models.id"], name=op.f("fk_clips_model_id_models")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clips")),
    )
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_clips_model_id"), ["model_id"], unique=False)
        batch_op.create_index("ix_clips_queue_fewest", ["n_ratings", "id"], unique=False)
        batch_op.create_index(
            "ix_clips_queue_pairs", ["steps", "n_comparisons", "id"], unique=False
        )
        batch_op.create_index(
            "ix_clips_queue_priority", [sa.text("priority DESC"), "n_ratings", "id"], unique=False
        )

    op.create_table(
        "rounds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("reward_model_dir", sa.String(length=1024), nullable=False),
        sa.Column("rating_id_ranges", sa.JSON(), nullable=False),
        sa.Column("comparison_id_ranges", sa.JSON(), nullable=False),
        sa.Column("n_ratings", sa.Integer(), nullable=False),
        sa.Column("n_comparisons", sa.Integer(), nullable=False),
        sa.Column("parent_model_id", sa.Integer(), nullable=True),
        sa.Column("tuned_model_id", sa.Integer(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_model_id"], ["models.id"], name=op.f("fk_rounds_parent_model_id_models")
        ),
        sa.ForeignKeyConstraint(
            ["tuned_model_id"], ["models.id"], name=op.f("fk_rounds_tuned_model_id_models")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rounds")),
    )
    op.create_table(
        "comparisons",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("clip_a_id", sa.Integer(), nullable=False),
        sa.Column("clip_b_id", sa.Integer(), nullable=False),
        sa.Column("pair_lo", sa.Integer(), nullable=False),
        sa.Column("pair_hi", sa.Integer(), nullable=False),
        sa.Column("winner", sa.String(length=3), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("winner IN ('a', 'b', 'tie')", name=op.f("ck_comparisons_winner")),
        sa.CheckConstraint(
            "(pair_lo = clip_a_id AND pair_hi = clip_b_id AND clip_a_id < clip_b_id) OR (pair_lo = clip_b_id AND pair_hi = clip_a_id AND clip_b_id < clip_a_id)",
            name=op.f("ck_comparisons_pair_sorted"),
        ),
        sa.CheckConstraint("clip_a_id <> clip_b_id", name=op.f("ck_comparisons_distinct_clips")),
        sa.ForeignKeyConstraint(
            ["clip_a_id"], ["clips.id"], name=op.f("fk_comparisons_clip_a_id_clips")
        ),
        sa.ForeignKeyConstraint(
            ["clip_b_id"], ["clips.id"], name=op.f("fk_comparisons_clip_b_id_clips")
        ),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_comparisons_rater_id_raters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comparisons")),
        sa.UniqueConstraint(
            "rater_id", "pair_lo", "pair_hi", name=op.f("uq_comparisons_rater_id_pair_lo_pair_hi")
        ),
    )
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comparisons_clip_a_id"), ["clip_a_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comparisons_clip_b_id"), ["clip_b_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comparisons_created_at"), ["created_at"], unique=False)

    op.create_table(
        "ratings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rater_id", sa.Integer(), nullable=False),
        sa.Column("clip_id", sa.Integer(), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint("stars BETWEEN 1 AND 5", name=op.f("ck_ratings_stars_range")),
        sa.ForeignKeyConstraint(["clip_id"], ["clips.id"], name=op.f("fk_ratings_clip_id_clips")),
        sa.ForeignKeyConstraint(
            ["rater_id"], ["raters.id"], name=op.f("fk_ratings_rater_id_raters")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ratings")),
        sa.UniqueConstraint("rater_id", "clip_id", name=op.f("uq_ratings_rater_id_clip_id")),
    )
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ratings_clip_id"), ["clip_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_ratings_created_at"), ["created_at"], unique=False)

    op.create_table(
        "rating_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("rating_id", sa.Integer(), nullable=False),
        sa.Column("stars", sa.Integer(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("rated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("replaced_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["rating_id"],
            ["ratings.id"],
            name=op.f("fk_rating_history_rating_id_ratings"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_rating_history")),
    )
    with op.batch_alter_table("rating_history", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_rating_history_rating_id"), ["rating_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("rating_history", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_rating_history_rating_id"))

    op.drop_table("rating_history")
    with op.batch_alter_table("ratings", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ratings_created_at"))
        batch_op.drop_index(batch_op.f("ix_ratings_clip_id"))

    op.drop_table("ratings")
    with op.batch_alter_table("comparisons", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comparisons_created_at"))
        batch_op.drop_index(batch_op.f("ix_comparisons_clip_b_id"))
        batch_op.drop_index(batch_op.f("ix_comparisons_clip_a_id"))

    op.drop_table("comparisons")
    op.drop_table("rounds")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index("ix_clips_queue_priority")
        batch_op.drop_index("ix_clips_queue_pairs")
        batch_op.drop_index("ix_clips_queue_fewest")
        batch_op.drop_index(batch_op.f("ix_clips_model_id"))

    op.drop_table("clips")
    op.drop_table("raters")
    op.drop_table("models")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_jobs_created_at"))

    op.drop_table("jobs")
