"""What every API route shares: settings, the result store, submissions, webhooks."""

from __future__ import annotations

import threading
from typing import Any

from fastapi import Request

from producer.api.schemas import status_body
from producer.api.submissions import Submissions
from producer.api.webhook import WebhookWatcher
from tasks.records import JobStatus
from tasks.settings import Settings
from tasks.store import ResultStore, open_store

THUMB_CONCURRENCY = 4  # decodes at once: the API must not starve workers on the same host
THUMB_WAIT_SECONDS = 10.0  # longest a request waits for a slot before answering 503


class ApiContext:
    """One per app. Redis is connected on first use, so the API starts (and ``/healthz``
    says why it is unhealthy) while Redis is still down."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.thumb_slots = threading.BoundedSemaphore(THUMB_CONCURRENCY)
        self._lock = threading.Lock()
        self._store: ResultStore | None = None
        self._submissions: Submissions | None = None
        self._webhooks: WebhookWatcher | None = None
        self._celery: Any = None

    @property
    def store(self) -> ResultStore:
        """The result store. Raises StoreUnavailable while Redis cannot be reached."""
        with self._lock:
            if self._store is None:
                self._store = open_store(self.settings)
            return self._store

    @property
    def submissions(self) -> Submissions:
        store = self.store
        with self._lock:
            if self._submissions is None:
                self._submissions = Submissions(self.settings, store)
            return self._submissions

    @property
    def webhooks(self) -> WebhookWatcher:
        store = self.store
        with self._lock:
            if self._webhooks is None:
                self._webhooks = WebhookWatcher(store, self.settings, describe=self.describe)
            return self._webhooks

    @property
    def celery(self) -> Any:
        """The Celery app uploads publish with: built once, its connection pool reused."""
        with self._lock:
            if self._celery is None:
                from worker.app import create_app

                self._celery = create_app(self.settings)
            return self._celery

    def describe(self, status: JobStatus) -> dict[str, Any]:
        """The JSON body ``GET /jobs/{id}`` answers (and a webhook carries) for ``status``."""
        return status_body(status.to_dict(), self.submissions.error(status.job))

    def close(self) -> None:
        """Stop the webhook watcher (deliveries in flight are abandoned)."""
        if self._webhooks is not None:
            self._webhooks.stop(wait=False)


def context(request: Request) -> ApiContext:
    """FastAPI dependency: the app's shared context."""
    ctx: ApiContext = request.app.state.context
    return ctx
