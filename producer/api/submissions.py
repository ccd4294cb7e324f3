"""Run ``producer.submit`` for API requests in background threads.

Enumerating a big source (an S3 prefix of millions of keys) takes minutes, far longer
than an HTTP client should wait. The request waits a moment, so a small job or a bad
source is answered at once, then returns the job id while the thread goes on. A
failure after the job was created is remembered (``error``) and shown in its status;
the job is cancelled so it still ends and its webhook still fires.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from producer.submit import submit
from tasks.errors import BulktagError
from tasks.store import ResultStore
from worker.settings import Settings

log = logging.getLogger("bulktag.api")

DEFAULT_ANSWER_WITHIN = 2.0  # seconds a POST waits for enumeration before answering 202
JOB_CREATE_WAIT = 10.0  # seconds more to wait for the job hash itself (a slow Redis)
REMEMBERED_ERRORS = 1000


class Submissions:
    """Background submissions of one API process and the errors they ended with."""

    def __init__(
        self, settings: Settings, store: ResultStore, answer_within: float = DEFAULT_ANSWER_WITHIN
    ) -> None:
        self.settings = settings
        self.store = store
        self.answer_within = answer_within
        self._errors: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def error(self, job_id: str) -> str | None:
        """Why the submission of ``job_id`` stopped early, if it did (this process only)."""
        with self._lock:
            return self._errors.get(job_id)

    def _remember(self, job_id: str, message: str) -> None:
        with self._lock:
            self._errors[job_id] = message
            while len(self._errors) > REMEMBERED_ERRORS:
                self._errors.popitem(last=False)

    def start(self, sources: list[str], job_id: str, chunk_size: int | None) -> None:
        """Submit ``sources`` as ``job_id``; return once the job exists (or has failed).

        Raises:
            BulktagError: the submission failed before the job was created, or it failed
                and left no job behind (a missing source, nothing found, Redis down).
        """
        failure: list[BulktagError] = []

        def run() -> None:
            try:
                submit(sources, job=job_id, chunk_size=chunk_size, settings=self.settings)
            except BulktagError as exc:
                failure.append(exc)
                self._give_up(job_id, str(exc))
            except Exception as exc:  # a thread must not die silently
                log.exception("submitting job %s failed", job_id)
                failure.append(BulktagError(f"internal error: {type(exc).__name__}: {exc}"))
                self._give_up(job_id, f"internal error: {type(exc).__name__}")

        thread = threading.Thread(target=run, name=f"submit-{job_id}", daemon=True)
        thread.start()
        thread.join(self.answer_within)
        deadline = time.monotonic() + JOB_CREATE_WAIT
        while thread.is_alive() and self.store.job_state(job_id) is None:
            if time.monotonic() > deadline:
                raise BulktagError(f"job {job_id} was not created within {JOB_CREATE_WAIT:g}s")
            time.sleep(0.05)
        if failure and self.store.job_state(job_id) is None:
            raise failure[0]

    def _give_up(self, job_id: str, message: str) -> None:
        """Remember why; cancel a partly enumerated job so it still finishes."""
        self._remember(job_id, message)
        try:
            if self.store.job_state(job_id) in ("enumerating", "running"):
                self.store.cancel_job(job_id)
        except BulktagError:
            pass
        except Exception:  # Redis gone: nothing more we can do for this job
            log.exception("could not cancel job %s after a failed submission", job_id)
