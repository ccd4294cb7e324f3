"""docs/TASK_CONTRACT.md from a non-Python client: Node's celery-node (npm), protocols 1 and 2.

``tests/contract_client/celery_node_client.js`` writes the job keys of §3 with ioredis,
sends the chunk with celery-node 0.5.9 and waits for ``done``; a real `bulktag worker`
tags it. Its records must be the ones the plain torchvision pipeline gives.
``make celery-node`` installs the pinned package into ``var/node`` (npm ci).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
from PIL import Image

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
) -> None:
    command = node_client()
    # Given three photos
    photos = []
    for i, colour in enumerate([(220, 40, 40), (30, 180, 90), (40, 60, 200)]):
        path = tmp_path / f"node{i}.png"
        Image.new("RGB", (300, 220), colour).save(path)
        photos.append(path)
    job = f"node-p{protocol}"

    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1):
        # When the Node client writes the job and sends its chunk with celery-node
        proc = subprocess.run(
            [*command, worker_env["BULKTAG_REDIS_URL"], job, str(protocol)]
            + [str(p) for p in photos],
            env={**os.environ, "NODE_PATH": str(NODE_MODULES)},
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert proc.returncode == 0, proc.stderr + (tmp_path / "worker.log").read_text()[-2000:]

    # Then the job is done with one ok record per URI, as the reference pipeline says
    final = json.loads(proc.stdout)
    assert (final["state"], final["total"], final["ok"], final["error"]) == ("done", "3", "3", "0")
    model = load_reference_model(dev_weights)
    for index, path in enumerate(photos):
        record = json.loads(redis_client.hget(f"bulktag:job:{job}:records", str(index)) or "{}")
        assert (record["uri"], record["status"]) == (str(path), "ok")
        indices, scores = reference_top3(model, path)
        assert [label["index"] for label in record["top3"]] == indices
        assert [label["score"] for label in record["top3"]] == pytest.approx(scores, abs=1e-4)
    # and nothing is left queued or un-acked
    assert redis_client.llen("bulktag") == 0
    assert redis_client.hlen("unacked") == 0
