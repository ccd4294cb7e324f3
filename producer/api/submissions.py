"""Run ``producer.submit`` for API requests in background threads.

Enumerating a big source (an S3 prefix of millions of keys) takes minutes, far longer
than an HTTP client should wait. The request waits a moment, so a small job or a bad
source is answered at once, then returns the job id while the thread goes on. A
failure after the job was created is remembered (``error``) and shown in its status.
``submit`` itself ends such a job (it keeps the URIs already sent, which must still be
tagged); only a job left ``enumerating`` is cancelled here, so it still ends and its
webhook still fires. A job this thread did not create is never touched.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict

from producer.submit import submit
from tasks.errors import BulktagError, JobExists
from tasks.settings import Settings
from tasks.store import ResultStore

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

    def start(
        self, sources: list[str], job_id: str, chunk_size: int | None, priority: str = "normal"
    ) -> None:
        """Submit ``sources`` as ``job_id``; return once the job exists (or has failed).

        Raises:
            JobExists: another request or producer created ``job_id`` first.
            BulktagError: the submission failed before the job was created, or it failed
                and left no job behind (a missing source, nothing found, Redis down).
        """
        failure: list[BulktagError] = []

        def run() -> None:
            try:
                submit(
                    sources,
                    job=job_id,
                    chunk_size=chunk_size,
                    settings=self.settings,
                    priority=priority,
                )
            except JobExists as exc:
                # A racing request won this id: its job is not ours to cancel or to
                # annotate, so nothing is remembered either; this request answers 409.
                failure.append(exc)
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
        if failure and isinstance(failure[0], JobExists):
            raise failure[0]
        if failure and self.store.job_state(job_id) is None:
            raise failure[0]

    def _give_up(self, job_id: str, message: str) -> None:
        """Remember why; cancel the job only if it was left ``enumerating``.

        ``submit`` ends a job that failed midway with ``abort_enumeration`` (state
        ``running``, the URIs actually sent still to be tagged, ``submit_error`` in its
        hash), so cancelling a running job would throw that work away. A job still
        enumerating means that clean-up failed too (Redis blinked): cancel it so it
        ends, and keep the reason in its hash for every API process to show.
        """
        self._remember(job_id, message)
        try:
            if self.store.job_state(job_id) == "enumerating":
                if not self.store.job_field(job_id, "submit_error"):
                    self.store.annotate_job(job_id, submit_error=message[:500])
                self.store.cancel_job(job_id)
        except BulktagError:
            pass
        except Exception:  # Redis gone: nothing more we can do for this job
            log.exception("could not cancel job %s after a failed submission", job_id)
