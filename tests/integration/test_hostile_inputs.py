"""Hostile and broken files through a real worker: tagged or refused, worker up, memory bounded.

The corpus (tests/hostile_corpus.py) is built on the spot: bombs, truncations, text and
HTML posing as images, odd modes and shapes; plus a symlink out of the allowed roots and
a file deleted after submission. Pillow's pixel limit and the byte cap are set
deliberately (BULKTAG_MAX_PIXELS / BULKTAG_MAX_BYTES) and the pool process's peak RSS
is read from /proc.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import redis

from tests.hostile_corpus import MAX_BYTES, MAX_PIXELS, build_hostile_corpus
from tests.invariants import audit_job, cli, is_done, peak_rss_mib, wait_for, worker_pids
from tests.servers import running_worker

pytestmark = pytest.mark.e2e

# The model, torch and a batch of 224x224 tensors need ~0.6-0.9 GiB. Without the
# aspect-ratio check, one 300-byte PNG (1x60000) drove a process to ~16 GiB.
RSS_BOUND_MIB = 1536


def test_hostile_files_end_tagged_or_refused_and_the_worker_survives(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given the corpus, a symlink escaping the allowed root and a file that will vanish
    folder = tmp_path / "inbox"
    kinds = build_hostile_corpus(folder)
    escape = folder / "escape.jpg"
    escape.symlink_to("/etc/passwd")
    vanishing = folder / "vanishing.jpg"
    vanishing.write_bytes((folder / "rotated.jpg").read_bytes())
    env = {
        **worker_env,
        "BULKTAG_MAX_BYTES": str(MAX_BYTES),
        "BULKTAG_MAX_PIXELS": str(MAX_PIXELS),
        "BULKTAG_METRICS_PORT": "0",
    }

    with running_worker(env, tmp_path / "worker.log", redis_client, 1) as worker:
        assert worker.proc is not None
        pids_before = worker_pids(redis_client)
        # When the folder is submitted (and one file is deleted before a worker reads it)
        cli(env, "submit", str(folder), "--job", "hostile", "--chunk-size", "8")
        vanishing.unlink()
        wait_for("the job to finish", lambda: is_done(redis_client, "hostile"), 120)
        # Then the same processes are still up: nothing crashed, nothing was respawned
        assert worker.proc.poll() is None
        assert worker_pids(redis_client) == pids_before
        peaks = {pid: peak_rss_mib(pid) for pid in pids_before}
        records = [json.loads(line) for line in cli(env, "results", "hostile").stdout.splitlines()]

    by_uri = {r["uri"]: r for r in records}
    submitted = [*kinds, str(escape), str(vanishing)]
    audit = audit_job(redis_client, "hostile", submitted, [])
    # ...every good kind was tagged and every bad one refused with its reason
    outcome = {}
    for path, kind in kinds.items():
        rec = by_uri[path]
        assert rec["status"] == kind.expect, (kind.name, rec)
        if kind.expect == "error":
            assert kind.reason in rec["error"].lower(), (kind.name, rec["error"])
        else:
            assert len(rec["top3"]) == 3
        outcome[kind.name] = rec["error"] or "ok"
    assert by_uri[str(escape)]["status"] == "error"
    assert "outside the allowed roots" in by_uri[str(escape)]["error"]
    assert "no such file" in by_uri[str(vanishing)]["error"]
    # ...and memory stayed bounded in every pool process
    assert max(peaks.values()) < RSS_BOUND_MIB, peaks
    print(audit.line("hostile inputs"), f"peak_rss_mib={max(peaks.values()):.0f}")
    for name, ended in outcome.items():
        print(f"HOSTILE {name}: {ended}")
