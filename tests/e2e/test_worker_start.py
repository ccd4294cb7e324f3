"""How `bulktag worker` starts: torch only in the pool children, and a child that cannot
load the model stops the whole worker with one line and a failing exit status."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

import pytest
import redis

from bench.e2e import process_tree
from tests.servers import BULKTAG, REPO, running_worker

pytestmark = pytest.mark.e2e


def maps_torch(pid: int) -> bool:
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


def test_only_the_pool_children_load_torch(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 2) as worker:
        assert worker.proc is not None
        parent, *children = process_tree(worker.proc.pid)
        assert len(children) == 2
        assert not maps_torch(parent)  # ~570 MB less resident, ~1.5 s less serial start
        assert all(maps_torch(child) for child in children)


@pytest.mark.parametrize(
    "content",
    [b"not a checkpoint at all", b"\x80\x02\x85."],
    ids=["unpickling-error", "index-error"],  # what torch's weights-only unpickler raises
)
def test_a_pinned_checkpoint_no_child_can_load_stops_the_worker(
    worker_env: dict[str, str], tmp_path: Path, content: bytes
) -> None:
    # Given a file whose sha256 pin matches but which is no checkpoint at all
    bad = tmp_path / "not-a-checkpoint.pt"
    bad.write_bytes(content)
    digest = hashlib.sha256(bad.read_bytes()).hexdigest()
    (tmp_path / "not-a-checkpoint.pt.sha256").write_text(f"{digest}  {bad.name}\n")

    # When a worker is started on it
    proc = subprocess.run(
        [*BULKTAG, "worker", "--weights", str(bad), "--concurrency", "1"],
        cwd=REPO,
        env=worker_env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    # Then it stops (no pool respawning children forever), fails, and says why in one line
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("bulktag: error: worker cannot start: ")
    assert "is not a loadable checkpoint" in last
