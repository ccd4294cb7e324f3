"""Tell a stuck job from a slow one, for ``bulktag status``.

A job with pending URIs and no new result for a while is either slow (its chunks are
running on live worker processes) or stuck (a chunk's process died, no worker is up,
or its messages were lost). Three facts decide, each cheap to read:

- the job's in-flight chunks (``tasks.chunks``): who started what, and when;
- which worker processes are running a task right now (Celery's ``inspect active``,
  answered by each live worker's main process within a second);
- the broker: messages waiting in the queue and messages reserved but un-acked.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from producer.outage import missing
from tasks import keys
from tasks.chunks import ChunkLedger, InFlight
from tasks.errors import JobNotFound
from tasks.heartbeats import recovery_bound
from tasks.records import JobStatus
from tasks.recovery import recovery_events
from tasks.settings import DEFAULT_HEARTBEAT_TTL
from tasks.store import ResultStore

DEFAULT_STALL_AFTER = 120.0  # seconds without a new result before "slow" or "stuck"


@dataclass(frozen=True)
class Health:
    """A verdict on a job plus the facts behind it."""

    verdict: str  # done | cancelled | submitting | progressing | slow | queued | stuck
    detail: str
    idle_seconds: float  # since the last result (or since creation, before the first)
    in_flight: list[InFlight] = field(default_factory=list)
    orphaned: list[InFlight] = field(default_factory=list)
    queued: int = 0  # messages waiting in the broker queue (all jobs)
    reserved: int = 0  # messages delivered to workers and not yet acked (all jobs)
    live_workers: list[str] = field(default_factory=list)
    # Chunks a live worker re-queued after their worker died (``tasks.recovery``).
    recoveries: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["idle_seconds"] = round(self.idle_seconds, 1)
        return data


def _ago(seconds: float) -> str:
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f} min ago"


def diagnose(
    status: JobStatus,
    in_flight: list[InFlight],
    *,
    running: dict[str, set[int]],
    queued: int,
    reserved: int,
    stall_after: float = DEFAULT_STALL_AFTER,
    visibility_timeout: int,
    recover_within: float = recovery_bound(DEFAULT_HEARTBEAT_TTL),
    now: float | None = None,
) -> Health:
    """Judge a job from its status, in-flight chunks and the workers' answers.

    Args:
        status: the job's status snapshot.
        in_flight: chunks started and not finished (``ChunkLedger.in_flight``).
        running: live worker node -> pids running a task now (``{}``: none answered).
        queued: messages waiting in the broker queue.
        reserved: messages delivered to a worker and not acked.
        stall_after: seconds without a new result before the job is slow or stuck.
        visibility_timeout: the broker's last-resort redelivery, in seconds.
        recover_within: seconds after a worker's death by which a live worker re-queues
            its chunks (``tasks.heartbeats.recovery_bound``).
        now: the current time (injectable for tests).

    Returns:
        The verdict with a one-line explanation and the facts.
    """
    now = time.time() if now is None else now
    idle = now - (status.last_progress_at or status.created_at)
    orphaned = [e for e in in_flight if e.pid not in running.get(e.host, set())]
    alive = [e for e in in_flight if e not in orphaned]
    facts: dict[str, Any] = {
        "idle_seconds": idle,
        "in_flight": in_flight,
        "orphaned": orphaned,
        "queued": queued,
        "reserved": reserved,
        "live_workers": sorted(running),
    }
    orphan_note = ""
    if orphaned:
        oldest = orphaned[0]
        orphan_note = (
            f"{len(orphaned)} chunk(s) were started by worker processes that are no longer "
            f"running them (oldest: {oldest.chunk} on {oldest.host} pid {oldest.pid}, "
            f"{_ago(oldest.age(now))}); a live worker re-queues such a chunk within "
            f"{recover_within:.0f}s of its worker's death (Redis itself only after "
            f"{visibility_timeout}s)"
        )

    if status.state in ("done", "cancelled"):
        return Health(status.state, "", **facts)
    if status.state == "enumerating":
        return Health("submitting", "the producer is still enqueuing URIs", **facts)
    if idle <= stall_after:
        last = f"last result {_ago(idle)}" if status.last_progress_at else "no result yet"
        detail = last + (f"; {orphan_note}" if orphan_note else "")
        return Health("progressing", detail, **facts)

    quiet = f"no new result for {idle:.0f}s"
    if orphaned:
        up = "" if running else "; no worker is up: start `bulktag worker`"
        return Health("stuck", f"{quiet}: {orphan_note}{up}", **facts)
    if alive:
        detail = (
            f"{quiet}, but {len(alive)} chunk(s) are running on live workers "
            f"(oldest started {_ago(alive[0].age(now))})"
        )
        return Health("slow", detail, **facts)
    if queued and running:
        return Health(
            "queued", f"{quiet}: workers are busy; {queued} messages wait in the queue", **facts
        )
    if queued:
        detail = f"{quiet}: {queued} messages wait and no worker answers: start `bulktag worker`"
        return Health("stuck", detail, **facts)
    if reserved:
        detail = (
            f"{quiet}: {reserved} messages are reserved by workers that may have died; Redis "
            f"restores them {visibility_timeout}s after delivery"
        )
        return Health("stuck", detail, **facts)
    detail = (
        f"{quiet}: {status.pending} URIs pending but nothing is queued, reserved or running "
        f"(messages lost, e.g. Redis restarted without persistence): run "
        f"`bulktag retry {status.job} --pending`"
    )
    return Health("stuck", detail, **facts)


def running_processes(app: Any, timeout: float = 1.0) -> dict[str, set[int]]:
    """Live worker node -> pids of its pool processes running a task now.

    Every live worker answers Celery's ``inspect active`` broadcast (with an empty list
    when idle); a worker that does not answer within ``timeout`` counts as gone.
    """
    replies = app.control.inspect(timeout=timeout).active() or {}
    return {
        node: {int(task["worker_pid"]) for task in tasks if task.get("worker_pid")}
        for node, tasks in replies.items()
    }


def job_health(
    store: ResultStore,
    app: Any,
    job_id: str,
    *,
    queue: str,
    visibility_timeout: int,
    stall_after: float = DEFAULT_STALL_AFTER,
    heartbeat_ttl: int = DEFAULT_HEARTBEAT_TTL,
) -> tuple[JobStatus, Health]:
    """Gather the facts for ``job_id`` and judge it (see ``diagnose``).

    Raises:
        JobNotFound: no such job.
    """
    try:
        status = store.status(job_id)
    except JobNotFound:  # say so when Redis looks restarted empty (producer.outage)
        raise JobNotFound(missing(store.r, job_id)) from None
    in_flight = ChunkLedger(store.r).in_flight(job_id)
    running = {} if status.finished else running_processes(app)
    pipe = store.r.pipeline()
    pipe.llen(keys.broker_queue(queue))
    pipe.hlen(keys.broker_unacked())
    queued, reserved = pipe.execute()
    health = diagnose(
        status,
        in_flight,
        running=running,
        queued=int(queued),
        reserved=int(reserved),
        stall_after=stall_after,
        visibility_timeout=visibility_timeout,
        recover_within=recovery_bound(heartbeat_ttl),
    )
    events = [event.to_dict() for event in recovery_events(store.r, job_id)]
    return status, replace(health, recoveries=events)


def health_lines(health: Health) -> list[str]:
    """The human lines ``bulktag status`` prints under the counts."""
    lines = [f"health    {health.verdict}" + (f": {health.detail}" if health.detail else "")]
    lines += [f"recovered {event['message']}" for event in health.recoveries]
    if health.verdict in ("done", "cancelled"):
        return lines
    workers = ", ".join(health.live_workers) or "none answered"
    lines.append(f"progress  nothing new for {health.idle_seconds:.0f}s")
    lines.append(
        f"in flight {len(health.in_flight)} chunk(s) of this job, "
        f"{len(health.orphaned)} on processes no longer running them"
    )
    lines.append(f"queue     {health.queued} waiting, {health.reserved} reserved (all jobs)")
    lines.append(f"workers   {workers}")
    return lines
