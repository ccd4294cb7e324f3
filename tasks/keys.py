"""Every Redis key bulktag uses, built in one place (see rq/keys.py)."""

PREFIX = "bulktag"


def job(job_id: str) -> str:
    """Hash: job metadata and counters (total, ok, error, deduped, state, times)."""
    return f"{PREFIX}:job:{job_id}"


def job_uris(job_id: str) -> str:
    """List: the job's URIs in submission order; index i is the record's field."""
    return f"{PREFIX}:job:{job_id}:uris"


def job_records(job_id: str) -> str:
    """Hash: index -> final JSON record. HSETNX makes redelivery idempotent."""
    return f"{PREFIX}:job:{job_id}:records"


def jobs() -> str:
    """Sorted set: job ids scored by creation time."""
    return f"{PREFIX}:jobs"


def cached_result(model_id: str, sha256: str) -> str:
    """String: the top-3 JSON for content ``sha256`` under ``model_id`` (the dedupe cache)."""
    return f"{PREFIX}:result:{model_id}:{sha256}"


def worker(hostname: str, pid: int) -> str:
    """Hash: one worker process's counters (model loads, forward passes, chunks)."""
    return f"{PREFIX}:worker:{hostname}:{pid}"


def workers() -> str:
    """Set: keys of every worker process hash ever registered."""
    return f"{PREFIX}:workers"
