"""Request and response bodies of the HTTP API (they become its OpenAPI schema)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from tasks.keys import JOB_ID_PATTERN  # one rule for the CLI, the API and the contract

MAX_URIS_PER_REQUEST = 100_000


class JobRequest(BaseModel):
    """``POST /jobs``: exactly one of ``uris`` or ``source``."""

    model_config = ConfigDict(extra="forbid")

    uris: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_URIS_PER_REQUEST,
        description="Explicit URIs: absolute paths or file:// inside the allowed roots, "
        "s3://bucket/key, http(s)://.",
    )
    source: str | None = Field(
        default=None,
        description="One source as `bulktag submit` takes it: a folder, an s3:// prefix, "
        "a URL or @list.txt (local ones inside BULKTAG_ALLOWED_ROOTS).",
    )
    job: str | None = Field(
        default=None, pattern=JOB_ID_PATTERN, description="Job id (default: generated)."
    )
    chunk_size: int | None = Field(
        default=None, ge=1, le=10_000, description="URIs per task (default 32)."
    )
    webhook_url: str | None = Field(
        default=None,
        max_length=2048,
        description="POSTed the final status JSON once when the job is done or cancelled.",
    )
    priority: Literal["normal", "high"] = Field(
        default="normal",
        description="`high`: the interactive lane, taken by workers before bulk work "
        "(a chunk already running is not pre-empted).",
    )

    @model_validator(mode="after")
    def _one_input(self) -> JobRequest:
        if (self.uris is None) == (self.source is None):
            raise ValueError("give exactly one of 'uris' or 'source'")
        return self


class JobStatusBody(BaseModel):
    """A job's progress: the fields of ``bulktag status --json`` without ``health``."""

    model_config = ConfigDict(extra="allow")

    job: str
    state: Literal["enumerating", "running", "done", "cancelled"]
    total: int
    ok: int
    error: int
    deduped: int
    pending: int
    rate: float | None = Field(description="URIs finished per second")
    eta_seconds: float | None
    created_at: float
    last_progress_at: float | None
    finished_at: float | None
    chunk_size: int
    submit_error: str | None = Field(
        default=None, description="Why enumerating the source stopped early, if it did."
    )
    skipped: int = Field(
        default=0,
        description="Files the folder walk or S3 listing saw but did not take (not images).",
    )


class JobList(BaseModel):
    jobs: list[JobStatusBody]


class Label(BaseModel):
    label: str
    index: int
    score: float


class RecordItem(BaseModel):
    """One URI of a job with its position (the thumbnail index) and its outcome."""

    index: int
    uri: str
    status: Literal["ok", "error", "pending"]
    sha256: str | None = None
    error: str | None = None
    top3: list[Label] | None = None
    model: str | None = None


class RecordPage(BaseModel):
    job: str
    offset: int
    limit: int
    items: list[RecordItem]
    next_offset: int | None = Field(
        description="Offset to request next; null at the end. A filtered page may be short, "
        "even empty, with a next_offset: each request scans at most 5,000 URIs."
    )


class ModelInfo(BaseModel):
    model_id: str
    trained: bool
    processes: int


class ModelList(BaseModel):
    models: list[ModelInfo]


class Health(BaseModel):
    status: Literal["ok", "unavailable"]
    redis: bool
    detail: str | None = None


def status_body(status: dict[str, Any], submit_error: str | None) -> dict[str, Any]:
    """``status --json``'s dict plus ``submit_error`` (null unless enumeration stopped).

    The job hash's ``submit_error`` wins: every API process and ``bulktag status`` see
    it, and it says how many URIs were sent. This process's own ``submit_error`` fills
    in when the hash has none (the submission stopped because the job was cancelled).
    """
    return {**status, "submit_error": status.get("submit_error") or submit_error}
