"""Worker log lines that carry the job id and chunk id they belong to.

A pool process runs one task at a time, so "which job and chunk am I on" is process
state: set on ``task_prerun`` and cleared on ``task_postrun``. It is a plain module
global rather than a contextvar because the pipeline's fetch and decode threads log
too, and pool threads do not inherit contextvars.

``ChunkContext`` (a logging.Filter) stamps every record with ``job``, ``chunk`` (the
Celery task id of the chunk message) and ``task`` (``name[task id]``); Celery's log
handlers get it when the worker sets up logging. ``BULKTAG_LOG_FORMAT=text`` (default)
keeps Celery's line format with ``job=... chunk=...`` inserted; ``json`` prints one
JSON object per line for a log shipper (fields in docs/OPERATIONS.md).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from celery import signals

TEXT_FORMAT = "[%(asctime)s: %(levelname)s/%(processName)s] %(context)s%(message)s"

_current: dict[str, str | None] = {"job": None, "chunk": None, "task": None}


def set_context(job: str | None, chunk: str | None, task: str | None) -> None:
    """Name the job/chunk this process works on now (None clears a field)."""
    _current.update(job=job, chunk=chunk, task=task)


class ChunkContext(logging.Filter):
    """Adds ``job``, ``chunk``, ``task`` and a ready-made ``context`` prefix to records."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, value in _current.items():
            if not hasattr(record, name):
                setattr(record, name, value)
        job, chunk = getattr(record, "job", None), getattr(record, "chunk", None)
        parts = [f"job={job}"] if job else []
        parts += [f"chunk={chunk}"] if chunk else []
        if not parts and (task := getattr(record, "task", None)):
            parts = [f"task={task}"]
        record.context = " ".join(parts) + " " if parts else ""
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, process, pid, job, chunk, task, msg."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "process": record.processName,
            "pid": record.process,
            "job": getattr(record, "job", None),
            "chunk": getattr(record, "chunk", None),
            "task": getattr(record, "task", None),
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def formatter_for(log_format: str) -> logging.Formatter:
    """The formatter for ``BULKTAG_LOG_FORMAT`` (``text`` or ``json``)."""
    return JsonFormatter() if log_format == "json" else logging.Formatter(TEXT_FORMAT)


def install(logger: logging.Logger, log_format: str) -> None:
    """Put the context filter and bulktag's formatter on every handler of ``logger``."""
    formatter = formatter_for(log_format)
    for handler in logger.handlers:
        if not any(isinstance(f, ChunkContext) for f in handler.filters):
            handler.addFilter(ChunkContext())
        handler.setFormatter(formatter)


@signals.after_setup_logger.connect
@signals.after_setup_task_logger.connect
def _configure(logger: logging.Logger | None = None, **_: Any) -> None:
    from tasks.settings import Settings

    if logger is not None:
        install(logger, Settings.from_env().log_format)


@signals.task_prerun.connect
def _enter(task_id: str | None = None, task: Any = None, args: Any = None, **_: Any) -> None:
    name = f"{getattr(task, 'name', None)}[{task_id}]"
    if name.startswith("bulktag.tag_chunk[") and args and isinstance(args[0], str):
        set_context(args[0], task_id, name)
    else:  # another task (a scheduled run): no job or chunk, but say which task logs
        set_context(None, None, name)


@signals.task_postrun.connect
def _leave(**_: Any) -> None:
    set_context(None, None, None)
