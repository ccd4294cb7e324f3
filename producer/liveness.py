"""``bulktag workers``: each worker process's counters plus whether it is alive.

A process is ``alive`` while its heartbeat key lives, ``gone`` once it lapsed without a
clean stop (killed, crashed, paused, or cut off from Redis), ``stopped`` after a clean
shutdown (``tasks.heartbeats``). Main processes (which consume and ack chunks) are
listed too, with ``role=main``; pool processes (which run chunks) have ``role=pool``.
"""

from __future__ import annotations

import time

from tasks import keys
from tasks.heartbeats import HeartbeatStore
from tasks.store import ResultStore


def with_liveness(store: ResultStore, ttl: int) -> dict[str, dict[str, str]]:
    """Worker hash name -> its counters, with ``role``, ``state`` and ``last_heartbeat``.

    Processes registered before heartbeats existed show ``state=unknown``.
    """
    stats = store.all_worker_stats()
    for fields in stats.values():
        fields.setdefault("state", "unknown")
    for process in HeartbeatStore(store.r, ttl).states().values():
        beat = process.beat
        name = keys.worker(beat.host, beat.pid)
        fields = stats.setdefault(name, {})
        fields.update(
            role=beat.role,
            state=process.state,
            last_heartbeat=time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(beat.beat_at)),
        )
    return dict(sorted(stats.items()))
