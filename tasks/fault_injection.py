"""TEST HOOK: make a worker process die on a marked input, deterministically.

Real poison inputs (a decoder segfault, an allocation the OOM killer answers) cannot be
produced on demand, so the poison-chunk test marks a file instead: with
``BULKTAG_TEST_CRASH_ON=MARKER`` set in a worker's environment, the worker SIGKILLs its
own process whenever a chunk holds a URI whose file name contains MARKER. Unset (the
default, and the only sane production value) this module does nothing.
"""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Sequence

log = logging.getLogger(__name__)


def crash_if_marked(items: Sequence[tuple[int, str]], marker: str | None) -> None:
    """SIGKILL this process if any URI's file name contains ``marker`` (None: no-op)."""
    if not marker:
        return
    for _, uri in items:
        if marker in uri.rsplit("/", 1)[-1]:
            log.critical(
                "TEST HOOK BULKTAG_TEST_CRASH_ON=%r: killing process %d on %s",
                marker,
                os.getpid(),
                uri,
            )
            os.kill(os.getpid(), signal.SIGKILL)
