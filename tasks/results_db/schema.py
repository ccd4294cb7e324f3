"""The results database's tables (SQLAlchemy Core), one source for queries and migrations.

A person may query these tables directly (docs/RESULTS_DB.md): records keep their top-3
as plain columns, ``label1``/``index1``/``score1`` ... ``label3``/``index3``/``score3``,
with one index per rank on ``(index, score)`` so a look-up by label is an index range
scan, not a table scan. The schema changes only through a migration in ``migrations/``;
``versions/0001_initial.py`` builds exactly these tables.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

# The job: what `bulktag status` shows. Counts are derived from rows actually inserted
# into ``records`` in the same transaction, so they always add up (store.record_outcomes).
jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("job_id", sa.String(100), primary_key=True),
    sa.Column("state", sa.String(16), nullable=False),  # enumerating|running|done|cancelled
    sa.Column("total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ok", sa.Integer, nullable=False, server_default="0"),
    sa.Column("error", sa.Integer, nullable=False, server_default="0"),
    sa.Column("deduped", sa.Integer, nullable=False, server_default="0"),
    sa.Column("chunks", sa.Integer, nullable=False, server_default="0"),
    sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),  # walk: not images
    sa.Column("chunk_size", sa.Integer, nullable=False),
    sa.Column("retry_round", sa.Integer, nullable=False, server_default="0"),
    sa.Column("source", sa.Text, nullable=False, server_default=""),
    sa.Column("submit_error", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),  # unix seconds, as JobStatus
    sa.Column("first_result_at", sa.Double),
    sa.Column("last_progress_at", sa.Double),
    sa.Column("finished_at", sa.Double),
    sa.Index("ix_jobs_created_at", "created_at"),
    sa.Index("ix_jobs_finished_at", "finished_at"),
)

# Free-form descriptive fields of a job (reprocess_of, schedule, model, ...).
job_annotations = sa.Table(
    "job_annotations",
    metadata,
    sa.Column(
        "job_id", sa.String(100), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("name", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

# The job's URIs in submission order: ``idx`` is the record's index in the job.
job_uris = sa.Table(
    "job_uris",
    metadata,
    sa.Column(
        "job_id", sa.String(100), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("uri", sa.Text, nullable=False),
)

# One final record per (job, index): the primary key is what makes writes idempotent.
records = sa.Table(
    "records",
    metadata,
    sa.Column(
        "job_id", sa.String(100), sa.ForeignKey("jobs.job_id", ondelete="CASCADE"), primary_key=True
    ),
    sa.Column("idx", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("uri", sa.Text, nullable=False),
    sa.Column("sha256", sa.String(64)),
    sa.Column("status", sa.String(8), nullable=False),  # ok | error
    sa.Column("error", sa.Text),
    sa.Column("model", sa.String(200), nullable=False),
    sa.Column("deduped", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("written_at", sa.Double, nullable=False),
    *[
        column
        for n in (1, 2, 3)
        for column in (
            sa.Column(f"label{n}", sa.Text),
            sa.Column(f"index{n}", sa.Integer),
            sa.Column(f"score{n}", sa.Double),
        )
    ],
    sa.Index("ix_records_label1", "index1", "score1"),
    sa.Index("ix_records_label2", "index2", "score2"),
    sa.Index("ix_records_label3", "index3", "score3"),
    sa.Index("ix_records_sha256", "sha256"),
)

# The dedupe cache: content hash -> top-3 JSON under one model id, across all jobs.
result_cache = sa.Table(
    "result_cache",
    metadata,
    sa.Column("model_id", sa.String(200), primary_key=True),
    sa.Column("sha256", sa.String(64), primary_key=True),
    sa.Column("top3", sa.Text, nullable=False),  # [{"label", "index", "score"}, ...]
    sa.Column("created_at", sa.Double, nullable=False),
)
