"""The results database (SQLite by default, PostgreSQL for many machines).

``ResultsDB`` holds jobs, URIs, final records and the dedupe cache; Redis carries only
work (tasks.store). Schema: ``schema.py``, changed only through ``migrations/``.
"""

from tasks.results_db.store import ResultsDB

__all__ = ["ResultsDB"]
