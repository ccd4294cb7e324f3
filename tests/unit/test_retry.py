"""Transient faults are retried with growing, jittered waits; permanent ones never are."""

from __future__ import annotations

import pytest

from tasks.errors import NotFound, TransientUriError
from tasks.retry import MAX_DELAY, backoff_delay, retry_transient


class Flaky:
    """Fails with ``error`` ``failures`` times, then returns b"ok"."""

    def __init__(self, failures: int, error: Exception) -> None:
        self.failures = failures
        self.error = error
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        if self.calls <= self.failures:
            raise self.error
        return b"ok"


def test_transient_faults_are_retried_until_success() -> None:
    waits: list[float] = []
    fn = Flaky(2, TransientUriError("HTTP 503"))
    assert retry_transient(fn, attempts=3, base_delay=0.5, sleep=waits.append) == b"ok"
    assert fn.calls == 3
    assert len(waits) == 2 and all(0 <= w <= 0.5 * 2**i for i, w in enumerate(waits))


def test_exhausted_retries_keep_the_reason_and_say_so() -> None:
    fn = Flaky(5, TransientUriError("read timeout fetching http://x/a.jpg"))
    with pytest.raises(TransientUriError, match=r"read timeout .* \(gave up after 3 attempts\)"):
        retry_transient(fn, attempts=3, base_delay=0.1, sleep=lambda _: None)
    assert fn.calls == 3


def test_permanent_faults_are_not_retried() -> None:
    fn = Flaky(1, NotFound("HTTP 404"))
    with pytest.raises(NotFound):
        retry_transient(fn, attempts=5, base_delay=0.1, sleep=lambda _: None)
    assert fn.calls == 1


def test_backoff_doubles_and_is_capped() -> None:
    top = lambda: 1.0  # noqa: E731 - the largest draw of the jitter
    assert [backoff_delay(n, 0.5, top) for n in (1, 2, 3)] == [0.5, 1.0, 2.0]
    assert backoff_delay(30, 0.5, top) == MAX_DELAY
