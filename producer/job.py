"""A handle on a submitted job: status, waiting, results, cancellation."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from typing import Any

import redis

from producer.outage import OUTAGE_ERRORS, WAIT_OUTAGE_BUDGET, Outage, vanished
from tasks import keys
from tasks.errors import JobNotFound
from tasks.records import JobStatus
from tasks.settings import Settings
from tasks.store import ResultStore, open_store


class Job:
    """What ``submit`` returns; also ``Job.attach(job_id)`` for an existing job."""

    def __init__(self, job_id: str, store: ResultStore, *, existed: bool = False) -> None:
        self.id = job_id
        self.store = store
        # Once the job has been seen, "not found" means its state vanished (an empty
        # Redis restart, a delete), not a mistyped id: status() says so.
        self._seen = existed

    @classmethod
    def attach(cls, job_id: str, settings: Settings | None = None) -> Job:
        """A handle on an existing job. Raises JobNotFound / StoreUnavailable."""
        settings = settings or Settings.from_env()
        job = cls(job_id, open_store(settings))
        job.status()
        return job

    def __repr__(self) -> str:
        return f"Job({self.id!r})"

    def status(self) -> JobStatus:
        """The job's status. Raises JobNotFound, saying so if the job vanished."""
        try:
            status = self.store.status(self.id)
        except JobNotFound:
            if self._seen:
                raise JobNotFound(vanished(self.id)) from None
            raise
        self._seen = True
        return status

    def wait(
        self,
        timeout: float | None = None,
        poll: float = 0.1,
        on_progress: Callable[[JobStatus], None] | None = None,
        on_outage: Callable[[str], None] | None = None,
        outage_budget: float = WAIT_OUTAGE_BUDGET,
    ) -> JobStatus:
        """Block until every URI has a final record (or the job is cancelled).

        Progress is read every ``poll`` seconds (starting at 20 ms); the end itself
        arrives at once, as a message on the job's pub/sub channel that the store's
        scripts publish when they mark it done or cancelled. Where pub/sub is not
        available, the end is seen within one ``poll``.

        A Redis outage is ridden out (``producer.outage``): reads are retried with
        backoff for ``outage_budget`` seconds, and ``on_outage`` hears when Redis goes
        and comes back.

        Raises:
            TimeoutError: ``timeout`` seconds passed first.
            StoreUnavailable: Redis stayed unreachable for ``outage_budget`` seconds.
            JobNotFound: the job is not in Redis; once it had been seen (a submitted
                job always has), the message says its state vanished.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        interval = min(0.02, poll)
        outage = Outage(self.id, outage_budget, on_outage)
        with self._finished_signal() as finished:
            sleep = finished
            while True:
                try:
                    status = self.status()  # after subscribing: an end in between is seen
                except OUTAGE_ERRORS as exc:
                    delay = outage.failed(exc)
                    if deadline is not None:
                        if time.monotonic() >= deadline:
                            raise TimeoutError(
                                f"job {self.id} not finished after {timeout}s "
                                f"(Redis unreachable: {exc})"
                            ) from exc
                        delay = min(delay, deadline - time.monotonic())
                    time.sleep(max(0.0, delay))
                    sleep = time.sleep  # the subscription died with the connection: poll
                    continue
                outage.succeeded()
                if on_progress:
                    on_progress(status)
                if status.finished:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(
                        f"job {self.id} not finished after {timeout}s: "
                        f"{status.done_count}/{status.total} done"
                    )
                try:
                    sleep(interval)
                except OUTAGE_ERRORS:
                    sleep = time.sleep  # seen as an outage by the next status read
                interval = min(poll, interval * 1.5)

    @contextlib.contextmanager
    def _finished_signal(self) -> Iterator[Callable[[float], None]]:
        """A ``sleep(seconds)`` that returns early when the job's end is published."""
        pubsub = self.store.r.pubsub(ignore_subscribe_messages=True)  # type: ignore[no-untyped-call]
        try:
            pubsub.subscribe(keys.job_finished_channel(self.id))
        except redis.RedisError:  # e.g. a proxy without pub/sub: plain polling
            pubsub.close()
            yield time.sleep
            return

        def sleep(seconds: float) -> None:
            pubsub.get_message(timeout=seconds)

        try:
            yield sleep
        finally:
            pubsub.close()

    def results(self, include_pending: bool = False) -> Iterator[dict[str, Any]]:
        """Final records in submission order (streamed from Redis)."""
        for _, uri, record in self.store.records(self.id):
            if record is not None:
                yield record.to_dict()
            elif include_pending:
                yield {"uri": uri, "status": "pending"}

    def cancel(self) -> str:
        """Stop the job: chunks not yet started are skipped by workers.

        Returns:
            The state the job was in; a done or cancelled job is left as it is.
        """
        return self.store.cancel_job(self.id)
