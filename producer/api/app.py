"""Build the FastAPI app (``create_api``) and serve it with uvicorn (``serve``).

Expected failures become JSON errors with the right status instead of tracebacks:
an unknown job is 404, a refused source 403, a bad request 400, Redis down 503.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import redis
from fastapi import FastAPI, Request, status
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from producer.api.context import ApiContext
from producer.api.job_actions import actions
from producer.api.routes import jobs, meta
from producer.api.search_routes import search
from producer.api.uploads import uploads
from tasks.errors import BulktagError, ConfigError, JobNotFound, NotAllowed, StoreUnavailable
from tasks.settings import Settings

log = logging.getLogger("bulktag.api")

STATIC = Path(__file__).with_name("static")
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
API_VERSION = "1"

DESCRIPTION = """\
Submit image URIs (or a folder, S3 prefix, URL or @list inside the allowed roots) as a
bulktag job, watch its progress, stream its top-3 labels as JSON Lines, cancel it;
or upload photos (`POST /uploads`, multipart field `files`) and get their top-3 back.
When `BULKTAG_API_TOKEN` is set, send `Authorization: Bearer <token>` on every route
except `/healthz` and the dashboard's static files. Result records follow result
schema v1; see docs/TASK_CONTRACT.md.
"""


def _error(code: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=code)


def create_api(settings: Settings | None = None) -> FastAPI:
    """The bulktag HTTP API and dashboard for ``settings`` (default: from the environment).

    Args:
        settings: where Redis is, the allowed roots, the API token and the fetch limits.

    Returns:
        A FastAPI app; run it with ``serve`` or any ASGI server.
    """
    ctx = ApiContext(settings or Settings.from_env())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        ctx.close()

    app = FastAPI(
        title="bulktag",
        version=API_VERSION,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.context = ctx
    app.state.settings = ctx.settings
    app.include_router(jobs)
    app.include_router(actions)
    app.include_router(uploads)
    app.include_router(meta)
    app.include_router(search)  # GET /search
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", include_in_schema=False)
    def dashboard() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    for exc_type, (code, prefix) in ERROR_STATUS.items():
        app.add_exception_handler(exc_type, _error_handler(code, prefix))

    return app


# HTTP status for each error raised on purpose; Starlette picks the most specific class.
ERROR_STATUS: dict[type[Exception], tuple[int, str]] = {
    JobNotFound: (status.HTTP_404_NOT_FOUND, ""),
    NotAllowed: (status.HTTP_403_FORBIDDEN, ""),
    ConfigError: (status.HTTP_400_BAD_REQUEST, ""),
    StoreUnavailable: (status.HTTP_503_SERVICE_UNAVAILABLE, ""),
    BulktagError: (status.HTTP_500_INTERNAL_SERVER_ERROR, ""),
    redis.RedisError: (status.HTTP_503_SERVICE_UNAVAILABLE, "Redis: "),
}


def _error_handler(code: int, prefix: str) -> Callable[[Request, Exception], JSONResponse]:
    def handle(_: Request, exc: Exception) -> JSONResponse:
        return _error(code, f"{prefix}{exc}")

    return handle


def serve(host: str, port: int, settings: Settings | None = None) -> None:
    """Run the API with uvicorn until interrupted (``bulktag api``)."""
    import uvicorn

    settings = settings or Settings.from_env()
    if settings.api_token is None and host not in LOOPBACK_HOSTS:
        log.warning(
            "serving on %s without BULKTAG_API_TOKEN: anyone who reaches this port can "
            "submit, read and cancel jobs",
            host,
        )
    uvicorn.run(create_api(settings), host=host, port=port, log_level="info")
