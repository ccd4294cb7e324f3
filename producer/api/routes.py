"""The API's routes: submit, list, watch, stream, cancel jobs; thumbnails; models.

Handlers are plain ``def``: FastAPI runs them in its thread pool, which suits the
blocking Redis client and the short wait of a submission.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Response, status
from fastapi.responses import StreamingResponse

from producer.api.auth import require_token
from producer.api.context import THUMB_WAIT_SECONDS, ApiContext, context
from producer.api.policy import check_source, check_uris
from producer.api.record_pages import record_page
from producer.api.schemas import (
    Health,
    JobList,
    JobRequest,
    JobStatusBody,
    ModelList,
    RecordPage,
)
from producer.api.thumbs import render_thumbnail
from producer.api.webhook import check_webhook_url
from producer.job import Job
from producer.submit import new_job_id
from tasks.errors import (
    BulktagError,
    JobExists,
    JobNotFound,
    NotAllowed,
    NotFound,
    TransientUriError,
    UriError,
)

Ctx = Annotated[ApiContext, Depends(context)]
JobId = Annotated[str, Path(description="The job id", max_length=200)]

jobs = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_token)])
meta = APIRouter(tags=["meta"])


def _status(ctx: ApiContext, job_id: str) -> dict[str, Any]:
    """Status JSON of ``job_id``; 404 (with the submission's error if any) when absent."""
    try:
        st = ctx.store.status(job_id)
    except JobNotFound:
        error = ctx.submissions.error(job_id)
        detail = f"no job named {job_id!r}" + (f" (submission failed: {error})" if error else "")
        raise HTTPException(status.HTTP_404_NOT_FOUND, detail) from None
    return ctx.describe(st)


@jobs.post(
    "",
    response_model=JobStatusBody,
    status_code=status.HTTP_201_CREATED,
    responses={
        202: {"model": JobStatusBody, "description": "Accepted; still enumerating the source"},
        400: {"description": "Bad source, URIs or webhook URL"},
        403: {"description": "A local source outside BULKTAG_ALLOWED_ROOTS"},
        409: {"description": "A job with that id exists"},
        413: {"description": "Body over BULKTAG_API_MAX_BODY bytes"},
    },
)
def create_job(body: JobRequest, ctx: Ctx, response: Response) -> dict[str, Any]:
    """Submit URIs or one source as a job, like ``bulktag submit``.

    Answers 201 once every URI is enqueued, or 202 while a big source is still being
    enumerated in the background (poll ``GET /jobs/{id}``).
    """
    settings = ctx.settings
    if body.uris is not None:
        check_uris(body.uris, settings)
        sources = body.uris
    else:
        assert body.source is not None  # the model's validator guarantees one of them
        check_source(body.source, settings)
        sources = [body.source]
    if body.webhook_url:
        try:
            check_webhook_url(body.webhook_url, settings)
        except (UriError, BulktagError) as exc:
            raise HTTPException(status.HTTP_400_BAD_REQUEST, f"webhook_url: {exc}") from None
    job_id = body.job or new_job_id()
    if ctx.store.job_state(job_id) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id!r} already exists")
    try:
        ctx.submissions.start(sources, job_id, body.chunk_size, body.priority)
    except JobExists:  # a racing request created it between the check above and now
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id!r} already exists") from None
    result = _status(ctx, job_id)
    if body.webhook_url:
        ctx.webhooks.watch(job_id, body.webhook_url)
    if result["state"] == "enumerating":
        response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"/jobs/{job_id}"
    return result


@jobs.get("", response_model=JobList)
def list_jobs(ctx: Ctx, limit: Annotated[int, Query(ge=1, le=500)] = 20) -> dict[str, Any]:
    """The most recent jobs first, each as its status JSON."""
    found = []
    for job_id in ctx.store.list_jobs(limit):
        try:
            found.append(ctx.describe(ctx.store.status(job_id)))
        except JobNotFound:  # deleted between the two reads
            continue
    return {"jobs": found}


@jobs.get("/{job_id}", response_model=JobStatusBody, responses={404: {}})
def get_job(job_id: JobId, ctx: Ctx) -> dict[str, Any]:
    """The job's progress: the same JSON as ``bulktag status JOB --json``."""
    return _status(ctx, job_id)


@jobs.delete("/{job_id}", response_model=JobStatusBody, responses={404: {}})
def cancel_job(
    job_id: JobId,
    ctx: Ctx,
    purge: Annotated[
        bool,
        Query(
            description="Also delete the job and its records for good (``bulktag delete``); "
            "without it the job is only cancelled and keeps its records"
        ),
    ] = False,
) -> dict[str, Any]:
    """Cancel the job: chunks not yet started are skipped by workers.

    With ``purge=true`` the job is then deleted with its URIs and records (the dedupe
    cache stays); the answer is its last status, with ``"purged": true``.
    """
    _status(ctx, job_id)
    Job(job_id, ctx.store).cancel()
    body = _status(ctx, job_id)
    if purge:
        ctx.store.delete_job(job_id)
        body["purged"] = True
    return body


@jobs.get(
    "/{job_id}/results",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {"application/x-ndjson": {}},
            "description": "One record per line (result schema v1), in submission order",
        },
        404: {},
    },
)
def job_results(
    job_id: JobId,
    ctx: Ctx,
    include_pending: Annotated[
        bool, Query(description="Also emit {uri, status: pending} for unfinished URIs")
    ] = False,
) -> StreamingResponse:
    """Stream the job's final records as JSON Lines, like ``bulktag results JOB``."""
    _status(ctx, job_id)
    records = Job(job_id, ctx.store).results(include_pending=include_pending)
    lines = (json.dumps(record) + "\n" for record in records)
    return StreamingResponse(lines, media_type="application/x-ndjson")


@jobs.get("/{job_id}/records", response_model=RecordPage, responses={404: {}})
def job_records(
    job_id: JobId,
    ctx: Ctx,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    only: Annotated[Literal["ok", "error", "pending"] | None, Query()] = None,
) -> dict[str, Any]:
    """A page of the job's URIs with their index (for thumbnails) and outcome.

    ``offset`` counts URIs in submission order; with ``only``, the page holds the next
    ``limit`` URIs of that status at or after ``offset``. One request looks at no more
    than 5,000 URIs (``record_pages.SCAN_CAP``), so a filtered page may be short (even
    empty) while ``next_offset`` is not null: request again from there to carry on.
    """
    total = _status(ctx, job_id)["total"]
    page, next_offset = record_page(ctx.store, job_id, total, offset, limit, only)
    return {
        "job": job_id,
        "offset": offset,
        "limit": limit,
        "items": page,
        "next_offset": next_offset,
    }


@jobs.get(
    "/{job_id}/thumbs/{index}",
    response_class=Response,
    responses={
        200: {"content": {"image/jpeg": {}}, "description": "JPEG, at most 256 px a side"},
        403: {"description": "The URI is outside what workers may read"},
        404: {"description": "No such job, index or object"},
        422: {"description": "The object is not a decodable image or too large"},
        502: {"description": "A transient fault fetching the object"},
        503: {"description": "Every thumbnail slot stayed busy; retry later"},
    },
)
def job_thumbnail(job_id: JobId, index: Annotated[int, Path(ge=0)], ctx: Ctx) -> Response:
    """A small JPEG of the job's URI number ``index``, read the way workers read it."""
    total = _status(ctx, job_id)["total"]
    # Past the job's end is 404 here: Redis's LINDEX refuses an index beyond 64 bits.
    uri = ctx.store.job_uri(job_id, index) if index < total else None
    if uri is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"job {job_id} has no URI #{index}")
    # A bounded wait: a burst of slow thumbnails (big remote objects) must not park every
    # thread of FastAPI's pool on the semaphore and stall the other routes behind them.
    if not ctx.thumb_slots.acquire(timeout=THUMB_WAIT_SECONDS):
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"thumbnail renderer busy: no free slot within {THUMB_WAIT_SECONDS:g}s; retry later",
            headers={"Retry-After": "5"},
        )
    try:
        data = render_thumbnail(uri, ctx.settings)
    except NotAllowed as exc:
        raise HTTPException(status.HTTP_403_FORBIDDEN, str(exc)) from None
    except NotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except TransientUriError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
    except UriError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    finally:
        ctx.thumb_slots.release()
    # A job's URI list never changes, so the browser may keep the thumbnail.
    return Response(
        data, media_type="image/jpeg", headers={"Cache-Control": "private, max-age=3600"}
    )


@meta.get("/models", response_model=ModelList, dependencies=[Depends(require_token)])
def list_models(ctx: Ctx) -> dict[str, Any]:
    """Model ids the registered worker processes run, and whether their weights are
    trained (the dashboard warns about untrained ones: their labels are meaningless)."""
    models: dict[str, dict[str, Any]] = {}
    for fields in ctx.store.all_worker_stats().values():
        model_id = fields.get("model_id")
        if not model_id:
            continue
        entry = models.setdefault(
            model_id,
            {"model_id": model_id, "trained": fields.get("trained") != "0", "processes": 0},
        )
        entry["processes"] += 1
    return {"models": sorted(models.values(), key=lambda m: m["model_id"])}


@meta.get("/healthz", response_model=Health, responses={503: {"model": Health}})
def healthz(ctx: Ctx, response: Response) -> dict[str, Any]:
    """Liveness and Redis reachability; open even when a token is set."""
    try:
        ctx.store.r.ping()
    except Exception as exc:  # StoreUnavailable on first connect, redis errors after
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
        return {"status": "unavailable", "redis": False, "detail": str(exc)}
    return {"status": "ok", "redis": True, "detail": None}
