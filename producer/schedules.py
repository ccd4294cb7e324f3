"""Scheduled runs: read ``schedules.toml`` and hand it to Celery beat.

The file (format in docs/OPERATIONS.md)::

    timezone = "Europe/Berlin"        # optional; cron times are read in it (default UTC)

    [schedules.incoming]
    source = "s3://bucket/incoming/"  # or a list: sources = ["/data/a", "@list.txt"]
    cron = "0 2 * * *"                # minute hour day-of-month month day-of-week

    [schedules.scans]
    source = "/data/scans"
    every = "15m"                     # or seconds: every = 900; units s, m, h, d
    chunk_size = 16                   # optional
    queue = "bulktag-gpu"             # optional: where the run's chunks go

Beat sends ``bulktag.run_schedule(name, sources, options)`` at each due time to its own
queue; the beat process runs it (``producer.scheduled``), which submits only what changed
(``producer.incremental``). Everything a run needs travels in the message.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from celery import Celery
from celery.schedules import crontab, schedule

from tasks.contract import TASK_RUN_SCHEDULE
from tasks.errors import ConfigError

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_KEYS = {"source", "sources", "cron", "every", "chunk_size", "queue"}


@dataclass(frozen=True)
class Schedule:
    """One named, recurring, incremental run over some sources."""

    name: str
    sources: tuple[str, ...]
    cron: str | None = None
    every: float | None = None  # seconds
    chunk_size: int | None = None
    queue: str | None = None

    def describe(self) -> str:
        return f"cron {self.cron}" if self.cron else f"every {_fmt_seconds(self.every or 0)}"

    def celery_schedule(self, app: Celery) -> crontab | schedule:
        """The Celery schedule object (cron fields read in the app's timezone)."""
        if self.cron:
            minute, hour, dom, month, dow = self.cron.split()
            return crontab(minute, hour, dow, dom, month, app=app)
        return schedule(timedelta(seconds=self.every or 0), app=app)

    def options(self) -> dict[str, Any]:
        """The run's options as they travel in the task message."""
        return {k: v for k, v in (("chunk_size", self.chunk_size), ("queue", self.queue)) if v}

    def next_run(self, app: Celery, last_run: datetime | None = None) -> datetime:
        """When beat will next send this run (``now`` if it is overdue).

        Cron: the next matching time after now. Interval: ``every`` after the last run
        (or after now when it never ran: beat starts counting when it starts).
        """
        now: datetime = app.now()
        if self.cron:
            due = now + self.celery_schedule(app).remaining_estimate(now)
            # cron times fall on whole minutes; drop the scheduler's sub-second drift
            rounded: datetime = (due + timedelta(seconds=30)).replace(second=0, microsecond=0)
            return rounded
        start: datetime = last_run or now
        return max(start + timedelta(seconds=self.every or 0), now)


@dataclass(frozen=True)
class ScheduleFile:
    """The parsed file: the timezone for cron times and the schedules by name."""

    path: Path
    timezone: str
    schedules: tuple[Schedule, ...]

    def get(self, name: str) -> Schedule:
        for entry in self.schedules:
            if entry.name == name:
                return entry
        names = ", ".join(s.name for s in self.schedules) or "none"
        raise ConfigError(f"no schedule named {name!r} in {self.path} (there are: {names})")


def load_schedules(path: Path) -> ScheduleFile:
    """Parse and validate a schedules file.

    Raises:
        ConfigError: the file is missing, is not TOML, or an entry is invalid; the
            message names the file and the schedule.
    """
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"schedules file not found: {path} (set BULKTAG_SCHEDULES)") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    tz = data.get("timezone", "UTC")
    if not isinstance(tz, str):
        raise ConfigError(f"{path}: timezone must be a string like 'Europe/Berlin'")
    _check_timezone(path, tz)
    table = data.get("schedules", {})
    if not isinstance(table, dict):
        raise ConfigError(f"{path}: [schedules.NAME] tables expected")
    entries = tuple(_parse_entry(path, name, raw) for name, raw in table.items())
    return ScheduleFile(path, tz, entries)


def _parse_entry(path: Path, name: str, raw: Any) -> Schedule:
    where = f"{path}: schedule {name!r}"
    if not NAME.match(name):
        raise ConfigError(f"{where}: names are letters, digits, '.', '_' and '-' (max 64)")
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a table")
    unknown = set(raw) - _KEYS
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(sorted(unknown))}")
    sources = raw.get("sources", raw.get("source"))
    if isinstance(sources, str):
        sources = [sources]
    if not sources or not all(isinstance(s, str) and s for s in sources):
        raise ConfigError(f'{where}: needs source = "..." or sources = [...]')
    if ("cron" in raw) == ("every" in raw):
        raise ConfigError(f'{where}: give exactly one of cron = "m h dom mon dow" or every')
    cron, every = raw.get("cron"), None
    if cron is not None:
        _check_cron(where, cron)
    else:
        every = _parse_every(where, raw["every"])
    chunk_size = raw.get("chunk_size")
    if chunk_size is not None and (not isinstance(chunk_size, int) or chunk_size < 1):
        raise ConfigError(f"{where}: chunk_size must be a positive integer")
    queue = raw.get("queue")
    if queue is not None and (not isinstance(queue, str) or not queue):
        raise ConfigError(f"{where}: queue must be a queue name")
    return Schedule(name, tuple(sources), cron, every, chunk_size, queue)


def _check_cron(where: str, cron: Any) -> None:
    if not isinstance(cron, str) or len(cron.split()) != 5:
        raise ConfigError(f"{where}: cron needs 5 fields (minute hour dom month dow): {cron!r}")
    minute, hour, dom, month, dow = cron.split()
    try:
        crontab(minute, hour, dow, dom, month)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: bad cron {cron!r}: {exc}") from None


def _parse_every(where: str, raw: Any) -> float:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        seconds = float(raw)
    elif isinstance(raw, str) and (m := re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", raw)):
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    else:
        raise ConfigError(f"{where}: every must be seconds or like '90s', '15m', '2h', '1d'")
    if seconds < 1:
        raise ConfigError(f"{where}: every must be at least 1 second")
    return seconds


def _check_timezone(path: Path, tz: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"{path}: unknown timezone {tz!r}") from None


def _fmt_seconds(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def configure_beat(app: Celery, schedules: ScheduleFile, queue: str) -> None:
    """Put the file's schedules on ``app`` as its ``beat_schedule``.

    Args:
        app: the bulktag Celery app beat runs.
        schedules: the parsed file.
        queue: where beat sends the run messages (``tasks.contract.schedule_queue``).
    """
    app.conf.timezone = schedules.timezone
    app.conf.beat_schedule = {
        entry.name: {
            "task": TASK_RUN_SCHEDULE,
            "schedule": entry.celery_schedule(app),
            "args": [entry.name, list(entry.sources), entry.options()],
            "options": {"queue": queue},
        }
        for entry in schedules.schedules
    }
