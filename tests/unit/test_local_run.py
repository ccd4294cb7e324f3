"""`bulktag run`'s pieces that need no Redis: options, folders, process groups, exports."""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from producer import cli
from producer.export import check_format, export_records
from producer.local_run import output_format, run_queue, worker_args
from producer.local_services import last_line, signals_held, spawn, stop_group
from producer.run_folder import claim_run_folder
from producer.sources import local_roots
from tasks.errors import ConfigError
from tasks.settings import Settings


def test_format_comes_from_the_flag_else_the_output_suffix_else_jsonl() -> None:
    assert output_format("csv", "tags.jsonl") == "csv"
    assert output_format(None, "tags.CSV") == "csv"
    assert output_format(None, "tags.parquet") == "parquet"
    assert output_format(None, "tags.jsonl") == "jsonl"
    assert output_format(None, None) == "jsonl"


def test_formats_this_build_cannot_write_fail_before_any_work() -> None:
    with pytest.raises(
        ConfigError, match=r"not available yet .*\(available: jsonl, csv, parquet\)"
    ):
        check_format("xml")
    assert check_format("parquet") is None  # binary: producer.parquet_export writes it


def test_sidecars_use_the_sidecar_writer(tmp_path: Path) -> None:
    from producer.local_run import check_sidecars
    from producer.sidecars import write_sidecars

    assert check_sidecars() is write_sidecars


def test_shared_export_writes_jsonl_and_csv_files(tmp_path: Path) -> None:
    records = [
        {
            "uri": "/p/a.jpg",
            "sha256": "ab",
            "status": "ok",
            "error": None,
            "model": "m",
            "top3": [{"label": "cat", "index": 281, "score": 0.5}] * 3,
        },
        {"uri": "/p/b.jpg", "sha256": None, "status": "error", "error": "bad", "model": "m"},
    ]
    settings = Settings()
    assert export_records(iter(records), "jsonl", str(tmp_path / "r.jsonl"), settings) == 2
    lines = (tmp_path / "r.jsonl").read_text().splitlines()
    assert [json.loads(x) for x in lines] == records
    assert export_records(iter(records), "csv", str(tmp_path / "r.csv"), settings) == 2
    rows = (tmp_path / "r.csv").read_text().splitlines()
    assert rows[1].startswith("/p/a.jpg,ok,,ab,m,cat,281,0.500000")


def test_worker_gets_only_the_options_given_and_never_the_default_metrics_port() -> None:
    args = argparse.Namespace(
        concurrency="2",
        threads=None,
        batch_size=8,
        precision="bf16",
        decode=None,
        device=None,
        weights=Path("/w.pt"),
    )
    assert worker_args(args, "bulktag", "run-x@h") == [
        "--concurrency=2",
        "--batch-size=8",
        "--precision=bf16",
        "--weights=/w.pt",
        "--metrics-port=0",
        "--queue=bulktag",
        "--hostname=run-x@h",
    ]


def test_the_local_folders_named_become_readable_roots_and_nothing_else(tmp_path: Path) -> None:
    (tmp_path / "photos").mkdir()
    (tmp_path / "one.jpg").write_bytes(b"x")
    sources = [
        str(tmp_path / "photos"),
        f"file://{tmp_path / 'one.jpg'}",
        "@list.txt",
        "-",
        "s3://bucket/prefix/",
        "https://example.com/a.jpg",
        str(tmp_path / "missing"),
    ]
    assert local_roots(sources) == [
        (tmp_path / "photos").resolve(),
        (tmp_path / "one.jpg").resolve(),
    ]


def test_a_second_run_at_once_gets_a_temporary_redis_folder(tmp_path: Path) -> None:
    console = Console(file=io.StringIO())
    with claim_run_folder(tmp_path / "run", console) as first:
        assert first.persistent and first.redis_dir == tmp_path / "run" / "redis"
        with claim_run_folder(tmp_path / "run", console) as second:
            assert not second.persistent
            assert second.redis_dir.is_dir()
            temporary = second.redis_dir
        assert not temporary.exists()  # removed with the second run
    with claim_run_folder(tmp_path / "run", console) as third:  # the lock was released
        assert third.persistent


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_stopping_a_child_kills_its_whole_group_even_after_the_leader_exits(
    tmp_path: Path,
) -> None:
    # Given a child whose own child outlives it (as a worker's pool would)
    pidfile = tmp_path / "grandchild.pid"
    with open(tmp_path / "log", "wb") as log, signals_held():
        proc = spawn(["sh", "-c", f"sleep 60 & echo $! > {pidfile}; exit 0"], env=None, log=log)
    proc.wait(10)
    deadline = time.monotonic() + 10
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert _alive(grandchild)
    assert os.getpgid(grandchild) == proc.pid  # its own group, not ours
    # When it is stopped
    stop_group(proc, grace=5)
    # Then the grandchild is gone too (reparented to init, which reaps it)
    deadline = time.monotonic() + 5
    while _alive(grandchild):
        assert time.monotonic() < deadline, "grandchild survived"
        time.sleep(0.05)


def test_a_child_ignores_the_terminals_ctrl_c_and_dies_with_its_parent(tmp_path: Path) -> None:
    # The parent here is a short-lived Python that spawns `sleep` and is then SIGKILLed.
    script = (
        "import sys, time; from producer.local_services import spawn, signals_held\n"
        f"log = open({str(tmp_path / 'log')!r}, 'wb')\n"
        "with signals_held():\n"
        "    p = spawn(['sleep', '60'], env=None, log=log)\n"
        "print(p.pid, flush=True); time.sleep(60)\n"
    )
    parent = subprocess.Popen(
        [sys.executable, "-c", script],
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert parent.stdout is not None
    child = int(parent.stdout.readline())
    assert os.getpgid(child) == child  # a session of its own: Ctrl-C reaches only the parent
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    parent.stdout.close()
    deadline = time.monotonic() + 5
    while _alive(child):
        assert time.monotonic() < deadline, "child outlived its SIGKILLed parent"
        time.sleep(0.05)


def test_the_telling_line_of_a_log_is_its_last_error(tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_text("starting\nbulktag: error: checkpoint missing\n[tail] shutting down\n")
    assert last_line(log) == "checkpoint missing"
    log.write_text("one\ntwo\n\n")
    assert last_line(log) == "two"
    assert last_line(tmp_path / "absent") == ""


def test_a_missing_checkpoint_is_one_line_before_anything_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("BULKTAG_WEIGHTS", str(tmp_path / "absent.pt"))
    assert cli.main(["run", str(tmp_path)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("bulktag: error: model checkpoint not found")
    assert not (tmp_path / "home").exists()


def test_on_a_shared_redis_the_run_gets_a_queue_of_its_own() -> None:
    assert run_queue("bulktag", "trip", shared=True) == "bulktag.run.trip"
    assert run_queue("bulktag", "trip", shared=False) == "bulktag"
