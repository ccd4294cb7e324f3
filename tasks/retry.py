"""Retry a transient fetch fault with exponential backoff and full jitter.

Remote fetchers raise ``TransientUriError`` for faults that may pass (timeouts, 5xx,
throttling). Retrying inside the fetch keeps one slow URI from costing its whole
chunk a redelivery; when the attempts run out the last fault becomes the URI's
final error, so a URI never vanishes.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

from tasks.errors import TransientUriError

log = logging.getLogger(__name__)

T = TypeVar("T")

MAX_DELAY = 10.0  # seconds; no single wait grows past this


def backoff_delay(attempt: int, base: float, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait before retry number ``attempt`` (1-based): full jitter.

    Full jitter (a uniform draw up to ``base * 2**(attempt-1)``) spreads the retries
    of many workers hitting one throttled server instead of synchronising them.
    """
    return float(rng() * min(MAX_DELAY, base * 2 ** (attempt - 1)))


def retry_transient(
    fn: Callable[[], T],
    *,
    attempts: int,
    base_delay: float,
    retry_on: tuple[type[TransientUriError], ...] = (TransientUriError,),
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call ``fn`` until it succeeds, retrying ``retry_on`` faults up to ``attempts`` tries.

    Args:
        fn: one attempt; raises a ``TransientUriError`` for a fault worth retrying.
        attempts: total tries, at least 1.
        base_delay: the first wait's upper bound in seconds; doubles per retry.
        retry_on: which transient faults to retry (others propagate at once).
        sleep: injectable for tests.

    Returns:
        What ``fn`` returned.

    Raises:
        TransientUriError: the last fault, its message saying how many tries were made.
        PermanentUriError: at once, never retried.
    """
    for attempt in range(1, attempts + 1):
        try:
            return fn()
        except retry_on as exc:
            if attempt >= attempts:
                raise type(exc)(f"{exc} (gave up after {attempts} attempts)") from exc
            delay = backoff_delay(attempt, base_delay)
            log.info("transient fault, retry %d/%d in %.2fs: %s", attempt, attempts - 1, delay, exc)
            sleep(delay)
    raise AssertionError("unreachable: attempts must be >= 1")
