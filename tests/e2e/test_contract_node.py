"""docs/TASK_CONTRACT.md from a non-Python client: Node's celery-node (npm), protocols 1 and 2.

The job rows of §3 are written with plain SQL (sqlite3, no bulktag), then
``tests/contract_client/celery_node_client.js`` sends the chunk with celery-node 0.5.9; a
real `bulktag worker` tags it. Its records must be the ones the plain torchvision
pipeline gives.
``make celery-node`` installs the pinned package into ``var/node`` (npm ci).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import redis
from PIL import Image

from tests.e2e.test_contract_raw import database, write_job
from tests.reference import load_reference_model, reference_top3
from tests.servers import REPO, need_or_fail, running_worker

pytestmark = pytest.mark.e2e

NODE_MODULES = REPO / "var" / "node" / "node_modules"
CLIENT = REPO / "tests" / "contract_client" / "celery_node_client.js"


def node_client() -> list[str]:
    node = shutil.which("node")
    need_or_fail(None if node else "node not installed (apt-get install nodejs npm)")
    need_or_fail(
        None
        if (NODE_MODULES / "celery-node").is_dir()
        else "celery-node not installed: run `make celery-node` (npm ci into var/node)"
    )
    assert node is not None
    return [node, str(CLIENT)]


@pytest.mark.parametrize("protocol", [1, 2])
def test_celery_node_tags_a_job_end_to_end(
    protocol: int,
    worker_env: dict[str, str],
    redis_client: redis.Redis,
    tmp_path: Path,
    dev_weights: Path,
    results_url: str,
) -> None:
    command = node_client()
    # Given three photos
    photos = []
    for i, colour in enumerate([(220, 40, 40), (30, 180, 90), (40, 60, 200)]):
        path = tmp_path / f"node{i}.png"
        Image.new("RGB", (300, 220), colour).save(path)
        photos.append(path)
    job = f"node-p{protocol}"
    from tasks.results_db import ResultsDB

    ResultsDB.open(results_url)  # the schema (bulktag db upgrade), as an operator would make it
    db = database(results_url)
    write_job(db, job, [str(p) for p in photos])

    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1):
        # When the Node client sends the job's chunk with celery-node
        proc = subprocess.run(
            [*command, worker_env["BULKTAG_REDIS_URL"], job, str(protocol), "0"]
            + [str(p) for p in photos],
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr + (tmp_path / "worker.log").read_text()[-2000:]
        assert json.loads(proc.stdout) == {"job": job, "sent": 3}
        job_row = "SELECT state, total, ok, error FROM jobs WHERE job_id = ?"
        deadline = time.monotonic() + 120
        while db.execute(job_row, (job,)).fetchone()["state"] != "done":
            assert time.monotonic() < deadline, (tmp_path / "worker.log").read_text()[-3000:]
            time.sleep(0.1)

    # Then the job is done with one ok record per URI, as the reference pipeline says
    assert tuple(db.execute(job_row, (job,)).fetchone()) == ("done", 3, 3, 0)
    model = load_reference_model(dev_weights)
    for index, path in enumerate(photos):
        record = db.execute(
            "SELECT * FROM records WHERE job_id = ? AND idx = ?", (job, index)
        ).fetchone()
        assert (record["uri"], record["status"]) == (str(path), "ok")
        indices, scores = reference_top3(model, path)
        assert [record[f"index{n}"] for n in (1, 2, 3)] == indices
        assert [record[f"score{n}"] for n in (1, 2, 3)] == pytest.approx(scores, abs=1e-4)
    # and nothing is left queued or un-acked
    assert redis_client.llen("bulktag") == 0
    assert redis_client.hlen("unacked") == 0
