"""``bulktag beat``: Celery beat with the schedules from ``schedules.toml``, and their runs.

Scheduled runs are producer work (list sources, submit what changed), so they run here,
not in tagging workers: this process is Celery beat embedded in a one-thread consumer of
its own queue (``<queue>.schedules``, ``tasks.contract.schedule_queue``) that executes
``bulktag.run_schedule`` (``producer.scheduled``). Tagging workers never import producer
code, and a run never waits behind a queue of photo chunks.

Run exactly one beat per Redis: two would send every run twice (the second run of a
pair finds the schedule locked or nothing changed, so it is harmless, but wasted).
Beat keeps when each schedule last ran in a small state file (``--state``), so a
restarted beat neither repeats nor forgets a due run.
"""

from __future__ import annotations

from pathlib import Path

from producer.schedules import configure_beat, load_schedules
from tasks.contract import schedule_queue
from tasks.settings import Settings

DEFAULT_STATE = Path("~/.cache/bulktag/beat-state")
# What the beat process's Celery app loads: the log format and the run task, no model.
BEAT_MODULES = ("worker.logs", "producer.scheduled")


def start_beat(
    settings: Settings,
    *,
    schedules: Path | None = None,
    state: Path | None = None,
    loglevel: str = "info",
) -> None:
    """Run Celery beat in this process (blocks until it stops).

    Raises:
        ConfigError: the schedules file is missing or invalid (checked before starting).
        StoreUnavailable: Redis cannot be reached.
    """
    from tasks.store import connect
    from worker.app import create_app

    parsed = load_schedules(schedules or settings.schedules)
    connect(settings.redis_url).close()
    state_file = (state or DEFAULT_STATE).expanduser()
    state_file.parent.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, include=BEAT_MODULES)
    runs = schedule_queue(settings.queue)
    configure_beat(app, parsed, runs)
    for entry in parsed.schedules:
        print(f"schedule {entry.name}: {entry.describe()} ({parsed.timezone}) -> {entry.sources}")
    app.start(
        [
            "worker",
            "--beat",
            f"--schedule-filename={state_file}",
            "--pool=solo",
            f"--queues={runs}",
            f"--loglevel={loglevel}",
            "--without-gossip",
            "--without-mingle",
        ]
    )
