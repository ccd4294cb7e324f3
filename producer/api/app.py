"""Build the FastAPI app (``create_api``) and serve it with uvicorn (``serve``).

Expected failures become JSON errors with the right status instead of tracebacks:
an unknown job is 404, a refused source 403, a bad request 400, Redis down 503.

Two guards run before any route, token or not: a request body over
``BULKTAG_API_MAX_BODY`` is refused with 413 as soon as its ``Content-Length`` (or the
bytes streamed so far) pass the cap, so it is never read whole into memory; and a
``Host`` header outside ``BULKTAG_API_ALLOWED_HOSTS`` (loopback names by default) is
refused with 400 (``/healthz`` excepted), so a DNS-rebinding web page cannot reach a
loopback API through the operator's browser.
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
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.types import Receive, Scope, Send

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
UPLOAD_LIMIT_SLACK = 1024 * 1024  # bytes over the upload cap before Starlette's 413

DESCRIPTION = """\
Submit image URIs (or a folder, S3 prefix, URL or @list inside the allowed roots) as a
bulktag job, watch its progress, stream its top-3 labels as JSON Lines, cancel it;
or upload photos (`POST /uploads`, multipart field `files`) and get their top-3 back.
When `BULKTAG_API_TOKEN` is set, send `Authorization: Bearer <token>` on every route
except `/healthz` and the dashboard's static files. Result records follow result
schema v1; see docs/TASK_CONTRACT.md.
"""


class HostCheck(TrustedHostMiddleware):
    """Starlette's Host allow-list, except on ``/healthz``: probes (Docker, Kubernetes,
    load balancers) call it by address, and it tells a rebinding page nothing."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/healthz":
            await self.app(scope, receive, send)
            return
        await super().__call__(scope, receive, send)


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
        max_body_size=ctx.settings.api_max_body,  # Starlette's limiter: 413, streamed count
    )
    app.add_middleware(
        HostCheck,
        allowed_hosts=list(ctx.settings.api_allowed_hosts),
        www_redirect=False,
    )
    app.state.context = ctx
    app.state.settings = ctx.settings
    app.include_router(jobs)
    app.include_router(actions)
    # Uploads have their own, larger streamed cap (BULKTAG_UPLOAD_MAX_TOTAL_BYTES, checked
    # in producer.api.multipart with a message naming it); the route's limit sits a
    # little above it so that check answers first and Starlette's limiter is a backstop.
    app.include_router(
        uploads, max_body_size=ctx.settings.upload_max_total_bytes + UPLOAD_LIMIT_SLACK
    )
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
    if host not in LOOPBACK_HOSTS and "*" not in settings.api_allowed_hosts:
        log.info(
            "answering only Host names %s; set BULKTAG_API_ALLOWED_HOSTS to the names "
            "clients use to reach this server",
            ", ".join(settings.api_allowed_hosts),
        )
    uvicorn.run(create_api(settings), host=host, port=port, log_level="info")
