"""``GET /search``: records whose top-3 holds any of the labels, newest first, paged.

The same resolution as ``bulktag search`` (``producer.search``): a label is a category
name of the model (case-insensitive, exact) or a class index; an unknown name is a 422
whose detail suggests the closest names. Items carry their job and index, so the
dashboard shows each hit's thumbnail from ``/jobs/{job}/thumbs/{index}``.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import BaseModel, Field

from producer.api.auth import require_token
from producer.api.context import ApiContext, context
from producer.api.schemas import Label
from producer.search import matches, model_labels, resolve_labels
from tasks.errors import ConfigError, JobNotFound

search = APIRouter(tags=["search"], dependencies=[Depends(require_token)])


class SearchItem(BaseModel):
    """One matching record, with the job and index its thumbnail is served under."""

    job: str
    index: int
    uri: str
    status: str
    sha256: str | None = None
    top3: list[Label] | None = None
    model: str


class ResolvedLabel(BaseModel):
    label: str
    index: int


class SearchPage(BaseModel):
    model: str = Field(description="The model whose labels the query was resolved against")
    labels: list[ResolvedLabel]
    offset: int
    limit: int
    items: list[SearchItem]
    next_offset: int | None = Field(
        description="Offset to request next; null at the end. A page may be short when "
        "records of another model with other labels were skipped."
    )


@search.get(
    "/search",
    response_model=SearchPage,
    responses={404: {"description": "No such job"}, 422: {"description": "Unknown label"}},
)
def search_records(
    ctx: Annotated[ApiContext, Depends(context)],
    label: Annotated[list[str], Query(min_length=1, description="Name or class index; repeat")],
    min_score: Annotated[float, Query(ge=0.0, le=1.0)] = 0.0,
    job: Annotated[str | None, Query(max_length=200)] = None,
    model: Annotated[str | None, Query(max_length=200)] = None,
    top1: bool = False,
    offset: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Records (across jobs unless ``job``) whose top-3, or top-1 with ``top1``, holds
    any ``label`` at ``min_score`` or more, newest first; ``offset``/``limit`` page them
    like ``/jobs/{id}/records``."""
    store = ctx.store
    try:
        if job is not None:
            store.status(job)
        labelset = model_labels(store, ctx.settings, model)
        query = resolve_labels(label, labelset)
    except JobNotFound as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from None
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(exc)) from None
    rows = list(
        store.search(
            query.indices,
            min_score=min_score,
            top1=top1,
            job_id=job,
            model_id=model,
            limit=limit + 1,  # one more: is there a next page?
            offset=offset,
        )
    )
    items = [
        {"job": j, "index": i, **record.to_dict()}
        for j, i, record in rows[:limit]
        if matches(record, query, min_score, top1)
    ]
    return {
        "model": labelset.model,
        "labels": [{"label": labelset.categories[i], "index": i} for i in query.indices],
        "offset": offset,
        "limit": limit,
        "items": items,
        "next_offset": offset + limit if len(rows) > limit else None,
    }
