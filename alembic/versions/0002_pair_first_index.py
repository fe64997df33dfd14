"""Indexes for next_pair: its first clip, and its partner per model.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-24

``next_pair`` picks clip A as the clip with the fewest comparisons (ties: oldest) over
all lengths, then B per model within A's length; without these indexes each is a sort
or a scan of every clip (benchmarks/bench_db.py). Replaces ``ix_clips_queue_pairs``
(steps, n_comparisons, id), which could not serve "another model first".
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index("ix_clips_queue_pairs")
        batch_op.create_index("ix_clips_queue_pair_first", ["n_comparisons", "id"], unique=False)
        batch_op.create_index(
            "ix_clips_queue_pair_model", ["model_id", "steps", "n_comparisons", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_index("ix_clips_queue_pair_model")
        batch_op.drop_index("ix_clips_queue_pair_first")
        batch_op.create_index(
            "ix_clips_queue_pairs", ["steps", "n_comparisons", "id"], unique=False
        )
