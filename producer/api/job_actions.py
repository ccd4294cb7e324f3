"""Job actions beyond submit and cancel: ``POST /jobs/{id}/retry`` (what ``bulktag
retry --errors`` does), for the dashboard's buttons and other clients."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel

from producer.api.auth import require_token
from producer.api.context import ApiContext, context
from producer.resubmit import retry_job

Ctx = Annotated[ApiContext, Depends(context)]

actions = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[Depends(require_token)])


class RetryBody(BaseModel):
    """What one retry enqueued (``bulktag retry``'s report)."""

    job: str
    round: int
    errors: int
    pending: int
    chunks: int


@actions.post(
    "/{job_id}/retry",
    response_model=RetryBody,
    responses={
        400: {"description": "The job was cancelled or is still being submitted"},
        404: {"description": "No such job"},
    },
)
def retry_errors(
    job_id: Annotated[str, Path(description="The job id", max_length=200)],
    ctx: Ctx,
    pending: Annotated[
        bool, Query(description="Also enqueue URIs that have no record (lost messages)")
    ] = False,
) -> dict[str, Any]:
    """Enqueue the job's error URIs again, on the job's own lane; their records are
    replaced by the new outcome (an error again if the cause remains)."""
    report = retry_job(job_id, errors=True, pending=pending, settings=ctx.settings)
    return asdict(report)
