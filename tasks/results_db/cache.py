"""The dedupe cache: stored top-3 lists by (model id, sha256)."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from tasks.results_db.schema import result_cache
from tasks.results_db.transactions import Transactions


class Cache(Transactions):
    """Reads and writes of ``result_cache``."""

    def cached_top3(self, model_id: str, hashes: Sequence[str]) -> dict[str, list[dict[str, Any]]]:
        """Stored top-3 lists for the hashes that have one under ``model_id``."""
        if not hashes:
            return {}
        query = sa.select(result_cache.c.sha256, result_cache.c.top3).where(
            result_cache.c.model_id == model_id, result_cache.c.sha256.in_(list(hashes))
        )
        found = self._run(lambda c: c.execute(query).all(), write=False)
        return {h: json.loads(t) for h, t in found}

    def cache_entries(self, model_id: str | None = None) -> int:
        """How many cache entries there are (under ``model_id``, or all)."""
        query = sa.select(sa.func.count()).select_from(result_cache)
        if model_id is not None:
            query = query.where(result_cache.c.model_id == model_id)
        return int(self._run(lambda c: c.scalar(query), write=False) or 0)

    def clear_cache(self, model_id: str | None = None) -> int:
        """Drop the cache entries (under ``model_id``, or all); returns how many."""
        stmt = sa.delete(result_cache)
        if model_id is not None:
            stmt = stmt.where(result_cache.c.model_id == model_id)
        return int(self._run(lambda c: c.execute(stmt).rowcount))

    def cache_top3(self, model_id: str, results: dict[str, list[dict[str, Any]]]) -> None:
        if not results:
            return
        now = time.time()
        rows = [
            {"model_id": model_id, "sha256": h, "top3": json.dumps(t), "created_at": now}
            for h, t in results.items()
        ]
        stmt = self._insert(result_cache).on_conflict_do_nothing()
        self._run(lambda c: c.execute(stmt, rows))
