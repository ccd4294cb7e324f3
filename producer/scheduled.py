"""``bulktag.run_schedule``: the task beat sends for each due schedule.

The beat process runs it (``producer.beat``): it lists the sources and submits what
changed as a new job (``producer.incremental``) to the tagging workers' queue. Arguments
travel in the message, so the run needs nothing but the message::

    args = [name: str, sources: [str, ...], options: {"chunk_size"?: int, "queue"?: str}]

A redelivered or doubled run is harmless: runs of one schedule take a lock, skip while
the previous run's job is unfinished, and submit only what the index lacks.
"""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from producer.incremental import run_incremental
from tasks.contract import TASK_RUN_SCHEDULE
from tasks.errors import BulktagError
from tasks.settings import Settings

log = logging.getLogger("bulktag.schedule")


@shared_task(name=TASK_RUN_SCHEDULE, bind=True, ignore_result=True)
def run_schedule(
    self: Any, name: str, sources: list[str], options: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run schedule ``name`` once over ``sources``; returns the run report."""
    options = options or {}
    settings = Settings.from_env().with_overrides(queue=options.get("queue"))
    try:
        report = run_incremental(
            name, sources, settings=settings, chunk_size=options.get("chunk_size")
        )
    except BulktagError as exc:  # a missing source: say so, do not retry every beat
        log.error("schedule %s failed: %s", name, exc)
        return {"schedule": name, "error": str(exc)}
    if report.skipped:
        log.info("schedule %s skipped: %s", name, report.skipped)
    return report.to_dict()
