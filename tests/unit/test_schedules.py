"""schedules.toml: parsed into beat entries, validated with one clear line per mistake."""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from celery.schedules import crontab, schedule

from producer.schedules import configure_beat, load_schedules
from tasks.contract import TASK_RUN_SCHEDULE
from tasks.errors import ConfigError
from tasks.settings import Settings
from worker.app import create_app

EXAMPLE = """
timezone = "Europe/Berlin"

[schedules.incoming]
source = "s3://bucket/incoming/"
cron = "0 2 * * *"

[schedules.scans]
sources = ["/data/scans", "@/data/extra.txt"]
every = "15m"
chunk_size = 16
queue = "bulktag-gpu"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "schedules.toml"
    path.write_text(text)
    return path


def test_example_file_becomes_beat_entries(tmp_path: Path) -> None:
    parsed = load_schedules(write(tmp_path, EXAMPLE))
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    configure_beat(app, parsed, "bulktag")

    assert app.conf.timezone == "Europe/Berlin"
    beat = app.conf.beat_schedule
    assert set(beat) == {"incoming", "scans"}
    nightly = beat["incoming"]
    assert nightly["task"] == TASK_RUN_SCHEDULE
    assert nightly["args"] == ["incoming", ["s3://bucket/incoming/"], {}]
    assert isinstance(nightly["schedule"], crontab)
    assert nightly["schedule"].hour == {2} and nightly["schedule"].minute == {0}
    scans = beat["scans"]
    assert scans["args"] == [
        "scans",
        ["/data/scans", "@/data/extra.txt"],
        {"chunk_size": 16, "queue": "bulktag-gpu"},
    ]
    assert isinstance(scans["schedule"], schedule)
    assert scans["schedule"].run_every == timedelta(minutes=15)
    assert nightly["options"] == {"queue": "bulktag"}


def test_next_run_of_a_nightly_cron_is_the_next_2am_in_its_timezone(tmp_path: Path) -> None:
    parsed = load_schedules(write(tmp_path, EXAMPLE))
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    app.conf.timezone = parsed.timezone
    nxt = parsed.get("incoming").next_run(app).astimezone(ZoneInfo("Europe/Berlin"))
    now = datetime.now(ZoneInfo("Europe/Berlin"))
    assert (nxt.hour, nxt.minute, nxt.second) == (2, 0, 0)
    assert timedelta(0) < nxt - now <= timedelta(days=1, hours=1)


def test_next_run_of_an_interval_counts_from_the_last_run(tmp_path: Path) -> None:
    parsed = load_schedules(write(tmp_path, EXAMPLE))
    app = create_app(Settings(redis_url="redis://127.0.0.1:1/0"))
    scans = parsed.get("scans")
    last = app.now() - timedelta(minutes=5)
    assert scans.next_run(app, last) == last + timedelta(minutes=15)
    overdue = app.now() - timedelta(hours=1)
    assert scans.next_run(app, overdue) >= app.now() - timedelta(seconds=1)
    assert scans.describe() == "every 15m"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[schedules.a]\nsource = "/x"\n', "exactly one of cron"),
        ('[schedules.a]\nsource = "/x"\ncron = "0 2 * *"\n', "5 fields"),
        ('[schedules.a]\nsource = "/x"\ncron = "0 25 * * *"\n', "bad cron"),
        ('[schedules.a]\nsource = "/x"\nevery = "soon"\n', "every must be"),
        ('[schedules.a]\nsource = "/x"\nevery = 0\n', "at least 1 second"),
        ("[schedules.a]\nevery = 5\n", "needs source"),
        ('[schedules.a]\nsource = "/x"\nevery = 5\nnightly = true\n', "unknown key(s) nightly"),
        ('[schedules."a b"]\nsource = "/x"\nevery = 5\n', "names are letters"),
        ('timezone = "Mars/Olympus"\n', "unknown timezone"),
        ("[schedules.a\n", "schedules.toml"),
    ],
)
def test_mistakes_are_one_clear_config_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_schedules(write(tmp_path, text))


def test_missing_file_and_unknown_name(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="schedules file not found"):
        load_schedules(tmp_path / "nope.toml")
    with pytest.raises(ConfigError, match=r"no schedule named 'other'.*incoming, scans"):
        load_schedules(write(tmp_path, EXAMPLE)).get("other")


def test_the_shipped_example_file_is_valid() -> None:
    example = load_schedules(Path(__file__).resolve().parents[2] / "schedules.example.toml")
    assert [s.name for s in example.schedules] == ["archive"]
    assert example.get("archive").cron == "0 2 * * *"
