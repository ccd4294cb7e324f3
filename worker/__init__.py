"""The worker side: settings, the Celery app and per-process bootstrap."""
