"""`bulktag run DIR`: one command starts Redis and a worker, tags, writes, stops it all.

Real processes throughout: the command under test starts its own redis-server and
`bulktag worker`; the process table (/proc) is read to prove none outlives it. Every
child inherits the test's private HOME, which is how the table scan recognises them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tasks.results_db import ResultsDB
from tasks.settings import default_results_url
from tests.reference import load_reference_model, reference_top3
from tests.servers import BULKTAG, REPO, RedisServer, need_binary

pytestmark = pytest.mark.e2e


def run_env(home: Path, weights: Path) -> dict[str, str]:
    """No BULKTAG_* at all (so no Redis configured), a private HOME, the dev weights."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BULKTAG_")}
    home.mkdir(parents=True, exist_ok=True)
    env.update(HOME=str(home), BULKTAG_WEIGHTS=str(weights), PYTHONUNBUFFERED="1")
    return env


def processes_of(home: Path) -> dict[int, str]:
    """pid -> command line of every live process started under HOME=home.

    Recognised by the environment it inherited, or by a working directory inside
    ``home``: redis-server rewrites its title over its environment block and changes
    into its data folder, so for it only the second holds.
    """
    marker = f"HOME={home}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
            cwd = Path(os.readlink(entry / "cwd"))
            if marker not in environ and not cwd.is_relative_to(home):
                continue
            stat = (entry / "stat").read_text()
            if stat.rsplit(")", 1)[1].split()[0] == "Z":  # a zombie is gone, awaiting reaping
                continue
            found[int(entry.name)] = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # exited meanwhile, or not ours to read
            continue
    return found


def wait_gone(home: Path, timeout: float = 15) -> dict[int, str]:
    """What is still running of ``home``'s processes after up to ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while (left := processes_of(home)) and time.monotonic() < deadline:
        time.sleep(0.2)
    return left


def start_run(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    need_binary("redis-server")
    return subprocess.Popen(
        [*BULKTAG, "run", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # like a terminal's foreground job: Ctrl-C hits the group
    )


def watch(proc: subprocess.Popen[str], home: Path, timeout: float = 240) -> tuple[str, set[str]]:
    """Wait for ``proc``; return its stderr and the kinds of helper process seen meanwhile."""
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    while proc.poll() is None:
        assert time.monotonic() < deadline, "bulktag run did not finish"
        for cmd in processes_of(home).values():
            if "redis-server" in cmd:
                seen.add("redis-server")
            elif "producer.cli worker" in cmd:
                seen.add("worker")
        time.sleep(0.2)
    return proc.communicate()[1], seen


def persisted_redis(home: Path, tmp_path: Path) -> RedisServer:
    """A redis-server on the run's saved data (its password is not part of the dump)."""
    data = home / ".cache" / "bulktag" / "run" / "redis"
    assert (data / "dump.rdb").is_file()
    server = RedisServer(tmp_path / "inspect")
    server.workdir = data
    return server.start()


def test_run_tags_a_folder_writes_reference_records_and_leaves_nothing_running(
    tmp_path: Path, dev_weights: Path
) -> None:
    # Given a fresh corpus (repeats and broken files) and no Redis configured
    home = tmp_path / "home"
    env = run_env(home, dev_weights)
    corpus = build_corpus(
        tmp_path / "photos", 24, sizes=[(320, 240), (240, 320)], repeat_fraction=0.25, broken=2
    )
    out = tmp_path / "out.jsonl"

    # When one command tags it
    started = time.monotonic()
    proc = start_run(env, str(tmp_path / "photos"), "-o", str(out), "--concurrency", "1")
    stderr, seen = watch(proc, home)
    cold = time.monotonic() - started

    # Then it exits 0 having run a redis-server and a worker, and none of them is left
    assert proc.returncode == 0, stderr
    assert seen == {"redis-server", "worker"}
    assert wait_gone(home) == {}
    # ...with one record per image, broken files as errors with a reason
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["uri"] for r in records) == sorted(str(p) for p in corpus.all)
    errors = {r["uri"] for r in records if r["status"] == "error"}
    assert errors == {str(p) for p in corpus.broken}
    assert all(r["error"] for r in records if r["status"] == "error")
    # ...and every ok record equal to the plain torchvision pipeline on the same weights
    model = load_reference_model(dev_weights)
    for rec in records:
        if rec["status"] == "ok":
            indices, scores = reference_top3(model, Path(rec["uri"]))
            assert [t["index"] for t in rec["top3"]] == indices, rec["uri"]
            for got, want in zip(rec["top3"], scores, strict=True):
                assert abs(got["score"] - want) <= 1e-4, rec["uri"]

    # When the same folder is run again (a new job, a new private server on the saved data)
    again = tmp_path / "again.jsonl"
    started = time.monotonic()
    proc = start_run(env, str(tmp_path / "photos"), "-o", str(again), "--job", "again")
    stderr, _ = watch(proc, home)
    warm = time.monotonic() - started
    assert proc.returncode == 0, stderr
    assert wait_gone(home) == {}
    # Then every ok image came from the dedupe cache, with the same records
    assert [json.loads(line) for line in again.read_text().splitlines()] == records
    ok = sum(r["status"] == "ok" for r in records)
    assert f"deduped {ok})" in stderr, stderr
    print(f"cold {cold:.1f} s, warm {warm:.1f} s")  # figures: bench.run_cmd measures them

    # And both jobs persist in the run's store, readable with `bulktag results`
    server = persisted_redis(home, tmp_path)
    try:
        listed = subprocess.run(
            [*BULKTAG, "--redis-url", server.url, "results", "again"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert listed.returncode == 0, listed.stderr
        assert [json.loads(line) for line in listed.stdout.splitlines()] == records
    finally:
        server.stop()


@pytest.mark.parametrize(
    ("sig", "code"),
    [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
    ids=["ctrl-c", "sigterm"],
)
def test_ctrl_c_or_sigterm_mid_run_stops_everything_and_keeps_the_partial_job(
    tmp_path: Path, dev_weights: Path, sig: signal.Signals, code: int
) -> None:
    # Given a run big enough to be interrupted halfway
    home = tmp_path / "home"
    env = run_env(home, dev_weights)
    build_corpus(tmp_path / "photos", 240, sizes=[(320, 240)], repeat_fraction=0.0)
    proc = start_run(
        env, str(tmp_path / "photos"), "--job", "halfway", "--concurrency", "1", "--chunk-size", "4"
    )
    assert proc.stderr is not None
    lines = []
    for line in proc.stderr:  # wait until results are arriving
        lines.append(line)
        if line.startswith("first result after"):
            break
    else:
        pytest.fail(f"no result before the run ended:\n{''.join(lines)}")
    running = processes_of(home)
    assert any("redis-server" in c for c in running.values()), running
    assert any("producer.cli worker" in c for c in running.values()), running

    # When the user presses Ctrl-C (the terminal signals the whole foreground group),
    # or a service manager sends SIGTERM to the process it started
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)
    rest = proc.communicate(timeout=90)[1]

    # Then it exits 130 (143) and nothing it started is left running
    assert proc.returncode == code, "".join(lines) + rest
    assert wait_gone(home) == {}
    assert "cancelled:" in rest, rest
    # ...and the partial job is kept as cancelled, with the records done so far
    server = persisted_redis(home, tmp_path)
    try:
        redis.Redis.from_url(server.url).ping()  # the persisted server is up
        status = json.loads(
            subprocess.run(
                [*BULKTAG, "--redis-url", server.url, "status", "halfway", "--json"],
                cwd=REPO,
                env=env,
                capture_output=True,
                text=True,
                check=True,
                timeout=60,
            ).stdout
        )
        assert status["state"] == "cancelled"
        assert status["total"] == 240
        assert 0 < status["ok"] < 240
        db = ResultsDB.open(default_results_url(env))  # `bulktag run`'s default, under HOME
        recorded = sum(1 for _, _, rec in db.records("halfway") if rec is not None)
        assert recorded == status["ok"] + status["error"]
    finally:
        server.stop()


def test_without_redis_server_binary_says_how_to_get_one_in_one_line(
    tmp_path: Path, dev_weights: Path
) -> None:
    home = tmp_path / "home"
    env = run_env(home, dev_weights)
    env["PATH"] = str(tmp_path / "empty-bin")  # no redis-server anywhere on it
    (tmp_path / "p").mkdir()
    proc = subprocess.run(
        [*BULKTAG, "run", str(tmp_path / "p")],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("bulktag: error: ")
    for way in ("apt-get install redis-server", "brew install redis", "docker compose"):
        assert way in lines[0]
    assert processes_of(home) == {}


def test_with_redis_url_it_uses_that_redis_and_starts_no_server(
    tmp_path: Path, dev_weights: Path, redis_url: str
) -> None:
    # Given a Redis the user already runs (the test's own private server)
    home = tmp_path / "home"
    env = run_env(home, dev_weights)
    corpus = build_corpus(tmp_path / "photos", 6, sizes=[(320, 240)], repeat_fraction=0.0)

    # When the run is pointed at it
    proc = start_run(
        env, str(tmp_path / "photos"), "--redis-url", redis_url, "--job", "shared", "-o", "-"
    )
    stderr, seen = watch(proc, home)

    # Then only a worker was started, and none is left
    assert proc.returncode == 0, stderr
    assert seen == {"worker"}
    assert wait_gone(home) == {}
    # ...and the job lives in that Redis like any other: `bulktag results` reads it
    listed = subprocess.run(
        [*BULKTAG, "--redis-url", redis_url, "results", "shared"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert listed.returncode == 0, listed.stderr
    records = [json.loads(line) for line in listed.stdout.splitlines()]
    assert sorted(r["uri"] for r in records) == sorted(str(p) for p in corpus.all)
    assert all(r["status"] == "ok" for r in records)
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    workers = [client.hgetall(k) for k in client.smembers("bulktag:workers")]
    assert workers and all(w.get("model_id") for w in workers)
