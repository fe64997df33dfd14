"""Content hashes of a clip's files: what the MIDI and audio held when they were stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01

The listening app plays a clip's stored audio file only when its SHA-256 still matches
``audio_sha256`` (and it lies under ``RLMUSIC_HOME``); otherwise it renders the clip's
tokens afresh, so a rater always hears the melody the rating is stored against.
Clips stored before this revision have no hashes: their audio is rendered from tokens.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


# Plain ALTER TABLE on both backends (SQLite >= 3.35 drops columns in place): batch mode
# would copy the clips table, which the ratings' foreign keys forbid once there are any.


def upgrade() -> None:
    op.add_column("clips", sa.Column("midi_sha256", sa.String(length=64), nullable=True))
    op.add_column("clips", sa.Column("audio_sha256", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("clips", "audio_sha256")
    op.drop_column("clips", "midi_sha256")
