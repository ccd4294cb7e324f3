"""Live progress for ``submit --wait``: a rich bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)

from tasks.records import JobStatus


def fmt_eta(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = int(seconds)
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


def summary_line(st: JobStatus) -> str:
    rate = f"{st.rate:.1f} img/s" if st.rate else "-- img/s"
    return (
        f"{st.job} [{st.state}] {st.done_count}/{st.total} done  ok {st.ok}  "
        f"error {st.error}  deduped {st.deduped}  {rate}  ETA {fmt_eta(st.eta_seconds)}"
    )


class ProgressView:
    """Context manager returning an ``on_progress(status)`` callback."""

    def __init__(self, console: Console | None = None, plain_every: float = 5.0) -> None:
        self.console = console or Console(stderr=True)
        self.plain_every = plain_every
        self._last_plain = 0.0
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> Callable[[JobStatus], None]:
        if self.console.is_terminal:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(
                    "ok [green]{task.fields[ok]}[/] err [red]{task.fields[err]}[/] "
                    "dedup [cyan]{task.fields[dd]}[/]  {task.fields[rate]}  ETA {task.fields[eta]}"
                ),
                console=self.console,
                refresh_per_second=4,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task(
                "tagging", total=None, ok=0, err=0, dd=0, rate="", eta=""
            )
        return self.update

    def update(self, st: JobStatus) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(
                self._task,
                description=f"{st.job} {st.state}",
                total=st.total if st.state != "enumerating" else None,
                completed=st.done_count,
                ok=st.ok,
                err=st.error,
                dd=st.deduped,
                rate=f"{st.rate:.1f} img/s" if st.rate else "",
                eta=fmt_eta(st.eta_seconds),
            )
            return
        now = time.monotonic()
        if st.finished or now - self._last_plain >= self.plain_every:
            self._last_plain = now
            print(summary_line(st), file=sys.stderr, flush=True)

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)


class EnumerationView:
    """Progress while ``submit`` enumerates: URIs enqueued, rate, and backpressure waits.

    Listing a large S3 prefix or reading a 5-million-line file takes minutes; a spinner
    with a running count (rich, on stderr) shows it is moving. Off a terminal it prints
    a plain line every ``plain_every`` seconds instead.
    """

    def __init__(self, console: Console | None = None, plain_every: float = 5.0) -> None:
        self.console = console or Console(stderr=True)
        self.plain_every = plain_every
        self.total = 0
        self._started = time.monotonic()
        self._last_plain = self._started
        self._state = "enumerating"
        self._progress: Progress | None = None
        self._task: TaskID | None = None

    def __enter__(self) -> EnumerationView:
        self._started = self._last_plain = time.monotonic()
        if self.console.is_terminal:
            self._progress = Progress(
                SpinnerColumn(),
                TextColumn("[bold]{task.description}"),
                TextColumn("{task.fields[count]} URIs enqueued  {task.fields[rate]}"),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
                refresh_per_second=8,
            )
            self._progress.__enter__()
            self._task = self._progress.add_task("enumerating", count="0", rate="")
        return self

    def _line(self) -> str:
        elapsed = max(time.monotonic() - self._started, 1e-9)
        return f"{self._state}: {self.total:,} URIs enqueued ({self.total / elapsed:,.0f} URIs/s)"

    def _show(self) -> None:
        if self._progress is not None and self._task is not None:
            elapsed = max(time.monotonic() - self._started, 1e-9)
            self._progress.update(
                self._task,
                description=self._state,
                count=f"{self.total:,}",
                rate=f"({self.total / elapsed:,.0f}/s)",
            )
            return
        now = time.monotonic()
        if now - self._last_plain >= self.plain_every:
            self._last_plain = now
            print(self._line(), file=sys.stderr, flush=True)

    def on_chunk(self, total: int) -> None:
        """``submit``'s ``on_chunk``: the running count of URIs enqueued."""
        self.total = total
        self._state = "enumerating"
        self._show()

    def on_wait(self, queued: int) -> None:
        """``submit``'s ``on_wait``: the queue is at its cap, the producer is waiting."""
        self._state = f"queue full ({queued:,} chunks waiting), waiting for workers"
        self._show()

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.__exit__(None, None, None)
