"""The job queue: who runs a job, its heartbeat, progress, output folder, log tail,
cancellation, sweep trials; and ``job_points``, the curves a job reports as it runs.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01

Existing jobs (recorded by ``rlmusic round``) become ``origin = 'cli'``: they were run by
a command, never by a worker, so a worker never requeues them.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("origin", sa.String(length=16), server_default="cli", nullable=False))
        batch_op.add_column(sa.Column("output_dir", sa.String(length=1024), nullable=True))
        batch_op.add_column(sa.Column("progress", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("worker", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("attempts", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(
            sa.Column("cancel_requested", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.add_column(sa.Column("log_tail", sa.Text(), nullable=True))
        batch_op.add_column(sa.Column("parent_id", sa.Integer(), nullable=True))
        batch_op.create_check_constraint("origin", "origin IN ('queue', 'cli', 'sweep')")
        batch_op.create_foreign_key(batch_op.f("fk_jobs_parent_id_jobs"), "jobs", ["parent_id"], ["id"])
        batch_op.create_index(batch_op.f("ix_jobs_parent_id"), ["parent_id"], unique=False)
        batch_op.create_index("ix_jobs_queue", ["status", "id"], unique=False)

    op.create_table(
        "job_points",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("job_id", sa.Integer(), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["job_id"], ["jobs.id"], name=op.f("fk_job_points_job_id_jobs"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_points")),
    )
    with op.batch_alter_table("job_points", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_job_points_job_id"), ["job_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("job_points", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_job_points_job_id"))
    op.drop_table("job_points")
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_queue")
        batch_op.drop_index(batch_op.f("ix_jobs_parent_id"))
        batch_op.drop_constraint(batch_op.f("fk_jobs_parent_id_jobs"), type_="foreignkey")
        batch_op.drop_constraint("origin", type_="check")
        for column in ("parent_id", "log_tail", "cancel_requested", "attempts", "heartbeat_at",
                       "worker", "progress", "output_dir", "origin"):
            batch_op.drop_column(column)
