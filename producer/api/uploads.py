"""``POST /uploads``: photos from a browser or ``curl -F files=@photo.jpg``, tagged at once.

The body streams into the upload folder (``producer.api.multipart``), each file is
judged by its bytes (``producer.upload_store``) and the lot becomes one small job on
the interactive lane (``producer.upload_job``). With ``?wait=SECONDS`` the answer waits
for the records, so one request gives the top-3 of a photo.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request, status
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from producer.api.auth import require_token
from producer.api.context import ApiContext, context
from producer.api.multipart import FIELD, receive_parts
from producer.api.schemas import Label
from producer.job import Job
from producer.upload_job import maybe_prune_in_background, submit_upload
from producer.upload_store import ReceivedFile, UploadSink, UploadStore

MAX_WAIT_SECONDS = 60.0
# Requests holding a thread of FastAPI's pool (40) in ``?wait`` at once: past this, an
# upload is answered at once (records pending; poll GET /jobs/{id}/records) so waiting
# uploads can never starve the other routes of threads.
WAIT_SLOTS = 16
_wait_slots = threading.BoundedSemaphore(WAIT_SLOTS)

Ctx = Annotated[ApiContext, Depends(context)]

uploads = APIRouter(prefix="/uploads", tags=["uploads"], dependencies=[Depends(require_token)])


class UploadItem(BaseModel):
    """One uploaded file: its place in the job and, once final, its record."""

    index: int = Field(description="The file's index in the job (its thumbnail index)")
    filename: str = Field(description="The name the client sent (never trusted for type)")
    sha256: str = Field(description="sha256 of the file's bytes")
    size: int = Field(description="Bytes received")
    status: Literal["ok", "error", "pending"]
    error: str | None = None
    top3: list[Label] | None = None
    model: str | None = None


class UploadResponse(BaseModel):
    job: str
    state: Literal["enumerating", "running", "done", "cancelled"]
    items: list[UploadItem]


MULTIPART_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FIELD],
                    "properties": {
                        FIELD: {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "description": "One or more image files (repeat the field)",
                        }
                    },
                }
            }
        },
    }
}


@uploads.post(
    "",
    response_model=UploadResponse,
    status_code=status.HTTP_201_CREATED,
    openapi_extra=MULTIPART_BODY,
    responses={
        400: {"description": "A malformed multipart body"},
        413: {"description": "Body over BULKTAG_UPLOAD_MAX_TOTAL_BYTES or too many files"},
        422: {"description": "Not multipart, or no 'files' part"},
    },
)
async def upload_files(
    request: Request,
    ctx: Ctx,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=MAX_WAIT_SECONDS,
            description="Hold the answer up to SECONDS until every record is final",
        ),
    ] = 0,
) -> dict[str, Any]:
    """Store the ``files`` parts and tag them as one job on the interactive lane.

    Each file is capped (``BULKTAG_UPLOAD_MAX_BYTES``) and sniffed by content: one
    over the cap or not an image ends as an error record with its reason; the request
    fails only for auth, a missing ``files`` part or a body over the total cap (413).
    At most 16 requests wait at once; beyond that ``wait`` is ignored (the answer says
    ``pending``; poll ``GET /jobs/{id}/records``).
    """
    settings = ctx.settings
    store = UploadStore(settings.upload_dir)
    await run_in_threadpool(store.prepare)
    sinks = await receive_parts(
        request.headers.get("content-type", ""),
        request.headers.get("content-length"),
        request.stream(),
        store,
        max_bytes=settings.upload_max_bytes,
        max_total=settings.upload_max_total_bytes,
        max_files=settings.upload_max_files,
    )
    return await run_in_threadpool(_tag_upload, ctx, store, sinks, wait)


def _tag_upload(
    ctx: ApiContext, store: UploadStore, sinks: list[UploadSink], wait: float
) -> dict[str, Any]:
    """Store, submit, optionally wait, and build the answer (blocking: runs in a thread)."""
    try:
        received = [store.finish(sink) for sink in sinks]
    except BaseException:
        for sink in sinks:
            sink.discard()
        raise
    job_id = submit_upload(received, store=ctx.store, app=ctx.celery, settings=ctx.settings)
    job = Job(job_id, ctx.store)
    if wait > 0 and _wait_slots.acquire(blocking=False):
        try:
            with contextlib.suppress(TimeoutError):  # time ran out: answer what is final
                job.wait(timeout=wait)
        finally:
            _wait_slots.release()
    maybe_prune_in_background(ctx.settings, ctx.store)
    return {"job": job_id, "state": job.status().state, "items": _items(job, received)}


def _items(job: Job, received: list[ReceivedFile]) -> list[dict[str, Any]]:
    items = []
    for (index, _, record), part in zip(job.store.records(job.id), received, strict=True):
        item: dict[str, Any] = {
            "index": index,
            "filename": part.filename,
            "sha256": part.sha256,
            "size": part.size,
            "status": "pending",
        }
        if record is not None:
            rec = record.to_dict()
            item.update(status=rec["status"], error=rec["error"], top3=rec["top3"])
            item["model"] = rec["model"]
        items.append(item)
    return items
