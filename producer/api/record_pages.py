"""One page of a job's records for ``GET /jobs/{id}/records``, read from its offset.

``ResultStore.records`` streams a job from index 0, so paging through it would cost a
read of every record before ``offset``: the dashboard's pages, and any client walking a
million-URI job, would grow slower the further they went. A page here reads only the
window ``[offset, offset + SCAN_CAP)`` of the job's URIs and records (an index range of
the primary keys), in slices, and stops once the page is full. With ``only``
a page may hold fewer than ``limit`` items (even none) when few URIs in the window
match; ``next_offset`` then says where to carry on, so no request scans more than
``SCAN_CAP`` URIs however sparse the matches are.
"""

from __future__ import annotations

from typing import Any

from tasks.records import Record
from tasks.store import ResultStore

SCAN_CAP = 5_000  # most URIs one request reads, whatever ``only`` filters out
SLICE = 1_000  # URIs per database query within the window


def record_page(
    store: ResultStore, job_id: str, total: int, offset: int, limit: int, only: str | None
) -> tuple[list[dict[str, Any]], int | None]:
    """The next ``limit`` URIs of ``job_id`` at or after ``offset`` whose status is ``only``.

    Args:
        store: the result store.
        job_id: the job, known to exist.
        total: the job's URI count (its status ``total``), the end of the scan.
        offset: first index to look at.
        limit: most items to return.
        only: ``ok``, ``error`` or ``pending`` to keep only that status; None for all.

    Returns:
        The items (``{"index", "uri", "status", ...}`` in index order) and the offset
        to continue from: None once the job's end was reached with nothing left over.
    """
    end = min(total, offset + SCAN_CAP)
    # Unfiltered pages fill from the first slice: read no more than they can show
    # (+1 to see whether anything follows).
    step = SLICE if only else min(SLICE, limit + 1)
    items: list[dict[str, Any]] = []
    start = offset
    while start < end:
        stop = min(end, start + step)
        for index, uri, record in store.records_between(job_id, start, stop):
            if only == "pending" and record is not None:
                continue
            item = _item(index, uri, record)
            if only is not None and item["status"] != only:
                continue
            if len(items) == limit:  # one more match exists: the next page starts here
                return items, index
            items.append(item)
        start = stop
    return items, (end if end < total else None)


def _item(index: int, uri: str, record: Record | None) -> dict[str, Any]:
    """A page item: the record's fields (result schema v1) or a pending placeholder."""
    if record is None:
        return {"index": index, "uri": uri, "status": "pending"}
    return {"index": index, **record.to_dict()}
