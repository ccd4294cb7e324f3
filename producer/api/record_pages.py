"""One page of a job's records for ``GET /jobs/{id}/records``, read from its offset.

``ResultStore.records`` streams a job from index 0, so paging through it cost a read
and a JSON decode of every record before ``offset``: the dashboard's pages, and any
client walking a million-URI job, grew slower the further they went. A page here
reads only the window ``[offset, offset + SCAN_CAP)`` of the job's URI list (LRANGE)
and records hash (HMGET), in slices, and stops once the page is full. With ``only``
a page may hold fewer than ``limit`` items (even none) when few URIs in the window
match; ``next_offset`` then says where to carry on, so no request scans more than
``SCAN_CAP`` URIs however sparse the matches are.
"""

from __future__ import annotations

import json
from typing import Any

from tasks import keys
from tasks.records import Record
from tasks.store import ResultStore

SCAN_CAP = 5_000  # most URIs one request reads, whatever ``only`` filters out
SLICE = 1_000  # URIs per Redis round trip within the window


def record_page(
    store: ResultStore, job_id: str, total: int, offset: int, limit: int, only: str | None
) -> tuple[list[dict[str, Any]], int | None]:
    """The next ``limit`` URIs of ``job_id`` at or after ``offset`` whose status is ``only``.

    Args:
        store: the result store (its Redis client is read directly, see the module doc).
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
        pipe = store.r.pipeline(transaction=False)
        pipe.lrange(keys.job_uris(job_id), start, stop - 1)
        pipe.hmget(keys.job_records(job_id), [str(i) for i in range(start, stop)])
        uris, raws = pipe.execute()
        for index, (uri, raw) in enumerate(zip(uris, raws, strict=False), start):
            if only == "pending" and raw:
                continue  # a finished record: no need to decode it to drop it
            item = _item(index, uri, raw)
            if only is not None and item["status"] != only:
                continue
            if len(items) == limit:  # one more match exists: the next page starts here
                return items, index
            items.append(item)
        start = stop
    return items, (end if end < total else None)


def _item(index: int, uri: str, raw: str | None) -> dict[str, Any]:
    """A page item: the record's fields (result schema v1) or a pending placeholder."""
    if not raw:
        return {"index": index, "uri": uri, "status": "pending"}
    return {"index": index, **Record.from_dict(json.loads(raw)).to_dict()}
