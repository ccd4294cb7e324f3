"""Every Redis key bulktag uses, built in one place (see rq/keys.py)."""

PREFIX = "bulktag"

# Job ids become parts of key names: no ':' (it would reach into another job's keys,
# e.g. job "a:records"), no spaces, bounded length.
JOB_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"


def job(job_id: str) -> str:
    """Prefix of the job's work keys (jobs themselves live in the results database)."""
    return f"{PREFIX}:job:{job_id}"


def job_finished_channel(job_id: str) -> str:
    """Pub/sub channel: one message when the job ends (done or cancelled).

    The store publishes on it after the transaction that ended the job commits.
    """
    return f"{job(job_id)}:finished"


def worker(hostname: str, pid: int) -> str:
    """Hash: one worker process's counters (model loads, forward passes, chunks)."""
    return f"{PREFIX}:worker:{hostname}:{pid}"


def workers() -> str:
    """Set: keys of every worker process hash ever registered."""
    return f"{PREFIX}:workers"


def broker_queue(queue: str) -> str:
    """List: a Celery queue's waiting messages; kombu's Redis transport names it after the queue.

    Only priority 0 lives under the bare name; bulktag sends no priorities.
    """
    return queue


def broker_unacked() -> str:
    """Hash: kombu's messages delivered to a worker and not yet acknowledged (all queues)."""
    return "unacked"


def job_deliveries(job_id: str) -> str:
    """Hash: chunk id -> times a worker started it (poison-chunk detection, tasks.chunks)."""
    return f"{PREFIX}:job:{job_id}:deliveries"


def job_in_flight(job_id: str) -> str:
    """Hash: chunk id -> JSON {host, pid, started_at, uris} while a worker runs it."""
    return f"{PREFIX}:job:{job_id}:inflight"


def models() -> str:
    """Sorted set: model ids, scored by when a worker process last loaded one."""
    return f"{PREFIX}:models"


def job_versions(root_job_id: str) -> str:
    """Hash: model id -> id of the job holding that model's records of ``root_job_id``."""
    return f"{PREFIX}:job:{root_job_id}:versions"


def source_index(schedule: str) -> str:
    """Hash: uri -> "fingerprint model_id" of what a schedule's runs have tagged ok."""
    return f"{PREFIX}:index:{schedule}"


def job_fingerprints(job_id: str) -> str:
    """Hash: uri -> fingerprint seen when a scheduled job was enumerated (until folded)."""
    return f"{PREFIX}:job:{job_id}:fingerprints"


def schedule_state(schedule: str) -> str:
    """Hash: a schedule's last run (job, time, counts) and whether it is folded in."""
    return f"{PREFIX}:schedule:{schedule}"


def schedule_lock(schedule: str) -> str:
    """String with a TTL: held while one run of the schedule enumerates its sources."""
    return f"{PREFIX}:schedule:{schedule}:lock"


def heartbeat(hostname: str, pid: int) -> str:
    """String with a TTL: a live worker process's heartbeat (``tasks.heartbeats``)."""
    return f"{PREFIX}:heartbeat:{hostname}:{pid}"


def heartbeats() -> str:
    """Hash: "host:pid" -> JSON of each process's last heartbeat (kept after it lapses)."""
    return f"{PREFIX}:heartbeats"


def held_deliveries() -> str:
    """Hash: kombu delivery tag -> JSON {job, chunk, host, pid, consumer, started_at}."""
    return f"{PREFIX}:held"


def recovery_claim(tag: str, consumer: str) -> str:
    """String with a TTL: taken (SET NX) by the one sweeper that re-queues a dead holder's chunk."""
    return f"{PREFIX}:recovery:claim:{tag}:{consumer}"


def recoveries() -> str:
    """List (capped): JSON events "chunks of a dead worker re-queued", newest first."""
    return f"{PREFIX}:recoveries"


def upload_jobs() -> str:
    """Sorted set: ids of jobs made by ``POST /uploads``, scored by creation time; the
    files their URIs name are kept by upload pruning while the job exists."""
    return f"{PREFIX}:uploads:jobs"


def upload_prune_lock() -> str:
    """String with a TTL: one API process prunes the upload folder per interval."""
    return f"{PREFIX}:uploads:prune-lock"


def model_labels(base_model_id: str) -> str:
    """String: JSON list of a checkpoint's category names (index i = class i), set by workers.

    Keyed by the checkpoint's model id without ``+fast``/``+int8-...`` variants: those
    share its labels.
    """
    return f"{PREFIX}:model:{base_model_id}:labels"
