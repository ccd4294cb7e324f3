"""Model versions: which model id is current, and a job's records under each model.

**Current model.** Every worker process records the model id it loaded (``ZADD
bulktag:models``, scored by load time). The current model is the one loaded most
recently: after a rolling upgrade the new workers start last, so their model wins
without any setting. ``--model`` on the CLI overrides it.

**Versions.** ``bulktag reprocess JOB`` re-tags a finished job's URIs as a new job. The
original (*root*) job keeps its records; the root's ``versions`` hash maps each model id
to the job holding that model's records, so the two sets live side by side and
``bulktag results`` can pick one (see ``producer.versions``).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from tasks import keys


class ModelRegistry:
    """The model ids workers have loaded, and each root job's per-model versions."""

    def __init__(self, client: redis.Redis) -> None:
        self.r: Any = client  # redis-py's stubs vary by version; values are str

    def loaded(self, model_id: str, at: float | None = None) -> None:
        """Note that a worker process has just loaded ``model_id``."""
        self.r.zadd(keys.models(), {model_id: time.time() if at is None else at})

    def current(self) -> str | None:
        """The model id loaded most recently by any worker process (None: no worker yet)."""
        newest = self.r.zrevrange(keys.models(), 0, 0)
        return str(newest[0]) if newest else None

    def known(self) -> list[tuple[str, float]]:
        """Every model id ever loaded with its last load time, newest first."""
        pairs = self.r.zrevrange(keys.models(), 0, -1, withscores=True)
        return [(str(m), float(s)) for m, s in pairs]

    # -- versions of a job -------------------------------------------------------------
    def versions(self, root_job_id: str) -> dict[str, str]:
        """``{model id: job id}`` for every version of ``root_job_id`` registered so far."""
        return dict(self.r.hgetall(keys.job_versions(root_job_id)))

    def add_version(self, root_job_id: str, model_id: str, job_id: str) -> None:
        """Register ``job_id`` as the records of ``root_job_id`` under ``model_id``."""
        self.r.hset(keys.job_versions(root_job_id), model_id, job_id)

    def keep_version(self, root_job_id: str, model_id: str, job_id: str) -> None:
        """Like ``add_version``, but an existing entry for ``model_id`` wins."""
        self.r.hsetnx(keys.job_versions(root_job_id), model_id, job_id)
