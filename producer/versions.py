"""Re-tag a job with the current model, and pick which model's records to read.

Terms (see ``tasks.model_registry``): the *current model* is the model id a worker process
loaded most recently (or ``--model``). A *root* job is one submitted normally; each
``bulktag reprocess`` of it creates a new job holding the same URIs' records under
another model, registered in the root's ``versions`` (model id -> job id). The root
keeps its own records, so every model's results stay readable side by side.
"""

from __future__ import annotations

from dataclasses import dataclass

from producer.job import Job
from producer.submit import submit
from tasks.errors import ConfigError
from tasks.model_registry import ModelRegistry
from tasks.settings import Settings
from tasks.store import ResultStore, open_store


@dataclass(frozen=True)
class Version:
    """The job whose records answer a ``results`` request, and how it was chosen."""

    job: str
    model: str | None
    note: str | None = None  # said on stderr when the current model has no records yet


def root_of(store: ResultStore, job_id: str) -> str:
    """The job a reprocess job re-tagged, or ``job_id`` itself. Raises JobNotFound."""
    store.status(job_id)
    return store.job_field(job_id, "reprocess_of") or job_id


def versions_of(store: ResultStore, root: str) -> dict[str, str]:
    """``{model id: job id}`` for a root job, its own records included."""
    registry = ModelRegistry(store.r)
    # The database's annotations survive a Redis flush; Redis's map adds explicit entries.
    found = {**store.reprocess_versions(root), **registry.versions(root)}
    own = store.model_of(root)
    if own is not None:
        found.setdefault(own, root)
    return found


def pick_version(store: ResultStore, job_id: str, model: str | None = None) -> Version:
    """The job whose records to read for ``job_id`` under ``model`` (default: current).

    Raises:
        JobNotFound: no such job.
        ConfigError: ``model`` was asked for explicitly and the job has no records by it.
    """
    root = root_of(store, job_id)
    found = versions_of(store, root)
    wanted = model or ModelRegistry(store.r).current()
    if wanted is not None and wanted in found:
        return Version(found[wanted], wanted)
    if model is not None:
        have = ", ".join(sorted(found)) or "none yet"
        raise ConfigError(f"job {job_id} has no records by model {model} (it has: {have})")
    own = store.model_of(job_id)
    note = None
    if wanted is not None and own is not None and own != wanted:
        note = (
            f"job {job_id} was tagged by {own}, not by the current model {wanted}; "
            f"`bulktag reprocess {root}` re-tags it"
        )
    return Version(job_id, own, note)


def reprocess(
    job_id: str,
    *,
    new_job: str | None = None,
    chunk_size: int | None = None,
    settings: Settings | None = None,
    force: bool = False,
) -> Job:
    """Submit a finished job's URIs again, as a new job, for the current model.

    The new job is registered as the root job's version for the current model; the
    workers' dedupe cache is keyed by model id, so content already tagged by this
    model costs no forward pass and everything else is tagged afresh.

    Args:
        job_id: a finished job (or one of its reprocess jobs: the root is used).
        new_job: id of the new job (default ``<root>.<model id>``).
        chunk_size: URIs per task (default: the root job's).
        settings: explicit settings (default: from the environment).
        force: re-run even if the current model already has a version of the job.

    Raises:
        JobNotFound: no such job.
        ConfigError: the job is still running, no worker has registered a model yet,
            or (without ``force``) the current model already tagged it.
    """
    settings = settings or Settings.from_env()
    store = open_store(settings)
    status = store.status(job_id)
    if not status.finished:
        raise ConfigError(f"job {job_id} is still {status.state}; reprocess a finished job")
    root = root_of(store, job_id)
    registry = ModelRegistry(store.r)
    model = registry.current()
    if model is None:
        raise ConfigError("no worker has loaded a model yet: start the new workers first")
    own = store.model_of(root)
    if own is not None:
        registry.keep_version(root, own, root)
    done = versions_of(store, root).get(model)
    if done is not None and not force:
        raise ConfigError(f"job {root} already has records by the current model {model}: {done}")
    new_id = new_job or f"{root}.{model}"
    if new_job is None and store.job_state(new_id) is not None:
        new_id = f"{new_id}.{len(versions_of(store, root)) + 1}"
    job = submit(
        [f"reprocess of {root}"],
        job=new_id,
        chunk_size=chunk_size or store.status(root).chunk_size or None,
        settings=settings,
        uris=store.iter_uris(root),
    )
    store.annotate_job(job.id, reprocess_of=root, model=model)
    registry.add_version(root, model, job.id)
    return job
