"""``bulktag beat``: Celery beat with the schedules from ``schedules.toml``.

Run exactly one beat per Redis: two would send every run twice (the second run of a
pair finds the schedule locked or nothing changed, so it is harmless, but wasted).
Beat keeps when each schedule last ran in a small state file (``--state``), so a
restarted beat neither repeats nor forgets a due run.
"""

from __future__ import annotations

from pathlib import Path

from worker.schedules import configure_beat, load_schedules
from worker.settings import Settings

DEFAULT_STATE = Path("~/.cache/bulktag/beat-state")


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
    app = create_app(settings)
    configure_beat(app, parsed, settings.queue)
    for entry in parsed.schedules:
        print(f"schedule {entry.name}: {entry.describe()} ({parsed.timezone}) -> {entry.sources}")
    app.start(["beat", f"--loglevel={loglevel}", f"--schedule={state_file}"])
