"""Clips of their own kind: four-voice harmonisations beside melodies; harmony models.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01

``clips.kind`` (``melody`` for every existing clip, or ``harmony``) and ``clips.voices``
(a harmonisation's four token rows, soprano first; ``tokens`` holds its soprano), so
rated harmonisations from the Studio page are stored as clips and can enter studies
while the melody queues and the melody reward model keep to melodies. ``models.kind``
also admits ``harmony`` (the model that wrote a harmonisation).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), server_default="melody", nullable=False))
        batch_op.add_column(sa.Column("voices", sa.JSON(), nullable=True))
        batch_op.create_check_constraint(op.f("ck_clips_kind"), "kind IN ('melody', 'harmony')")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_models_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_models_kind"), "kind IN ('prior', 'tuned', 'harmony')")


def downgrade() -> None:
    op.execute("DELETE FROM ratings WHERE clip_id IN (SELECT id FROM clips WHERE kind = 'harmony')")
    op.execute("DELETE FROM comparisons WHERE clip_a_id IN (SELECT id FROM clips WHERE kind = 'harmony') "
               "OR clip_b_id IN (SELECT id FROM clips WHERE kind = 'harmony')")
    op.execute("DELETE FROM clips WHERE kind = 'harmony'")
    op.execute("DELETE FROM models WHERE kind = 'harmony'")
    with op.batch_alter_table("models", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_models_kind"), type_="check")
        batch_op.create_check_constraint(op.f("ck_models_kind"), "kind IN ('prior', 'tuned')")
    with op.batch_alter_table("clips", schema=None) as batch_op:
        batch_op.drop_constraint(op.f("ck_clips_kind"), type_="check")
        batch_op.drop_column("voices")
        batch_op.drop_column("kind")
