"""Initial results schema: jobs, annotations, URIs, records (label columns), dedupe cache.

Revision ID: 0001
Revises:
Create Date: 2026-12-01

Spelled out rather than built from ``schema.metadata``: a migration is frozen history,
the metadata moves on.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _job_fk() -> sa.Column[str]:
    return sa.Column(
        "job_id", sa.String(100), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    )


def upgrade() -> None:
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(100), primary_key=True),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("total", sa.Integer, nullable=False, server_default="0"),
        sa.Column("ok", sa.Integer, nullable=False, server_default="0"),
        sa.Column("error", sa.Integer, nullable=False, server_default="0"),
        sa.Column("deduped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chunks", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("chunk_size", sa.Integer, nullable=False),
        sa.Column("retry_round", sa.Integer, nullable=False, server_default="0"),
        sa.Column("source", sa.Text, nullable=False, server_default=""),
        sa.Column("submit_error", sa.Text),
        sa.Column("created_at", sa.Double, nullable=False),
        sa.Column("first_result_at", sa.Double),
        sa.Column("last_progress_at", sa.Double),
        sa.Column("finished_at", sa.Double),
    )
    op.create_index("ix_jobs_created_at", "jobs", ["created_at"])
    op.create_index("ix_jobs_finished_at", "jobs", ["finished_at"])
    op.create_table(
        "job_annotations",
        _job_fk(),
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "job_uris",
        _job_fk(),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("uri", sa.Text, nullable=False),
    )
    label_columns = [
        column
        for n in (1, 2, 3)
        for column in (
            sa.Column(f"label{n}", sa.Text),
            sa.Column(f"index{n}", sa.Integer),
            sa.Column(f"score{n}", sa.Double),
        )
    ]
    op.create_table(
        "records",
        _job_fk(),
        sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("uri", sa.Text, nullable=False),
        sa.Column("sha256", sa.String(64)),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("deduped", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("written_at", sa.Double, nullable=False),
        *label_columns,
    )
    for n in (1, 2, 3):
        op.create_index(f"ix_records_label{n}", "records", [f"index{n}", f"score{n}"])
    op.create_index("ix_records_sha256", "records", ["sha256"])
    op.create_table(
        "result_cache",
        sa.Column("model_id", sa.String(200), primary_key=True),
        sa.Column("sha256", sa.String(64), primary_key=True),
        sa.Column("top3", sa.Text, nullable=False),
        sa.Column("created_at", sa.Double, nullable=False),
    )


def downgrade() -> None:
    for table in ("result_cache", "records", "job_uris", "job_annotations", "jobs"):
        op.drop_table(table)
