"""Bytes from ``http://`` and ``https://`` URLs, safely.

Every download is streamed under the byte cap, bounded by connect/read timeouts and
a whole-attempt deadline, follows at most ``max_redirects`` redirects, and is retried
with backoff on timeouts, dropped connections, 5xx, 408 and 429 (other 4xx are final).

Each hop's host (the first URL and every redirect target) goes through the SSRF guard
(``tasks.ssrf``), and the connection is then made to the checked address, with the
original name kept for the Host header, TLS SNI and the certificate check, so a DNS
answer that changes between check and connect (rebinding) cannot steer it. Proxy
variables (``HTTP_PROXY``) are not used.
"""

from __future__ import annotations

import functools
import http
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar
from urllib.parse import unquote, urljoin, urlsplit

import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    LocationParseError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

from tasks.errors import (
    NotAllowed,
    NotFound,
    PermanentUriError,
    TooLarge,
    TransientUriError,
    UnsupportedUri,
)
from tasks.retry import retry_transient
from tasks.settings import Settings
from tasks.ssrf import IPAddress, checked_address

T = TypeVar("T")

REDIRECTS = frozenset({301, 302, 303, 307, 308})
RETRYABLE_4XX = frozenset({408, 429})  # request timeout, too many requests: throttling
READ_SIZE = 64 * 1024
USER_AGENT = "bulktag/0.1"


@dataclass(frozen=True)
class Target:
    """One hop's URL, split into what the connection and the request need."""

    url: str
    scheme: str
    host: str
    port: int
    path: str
    host_header: str
    auth: str | None

    @classmethod
    def parse(cls, url: str) -> Target:
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError as exc:
            raise PermanentUriError(f"malformed URL {url!r}: {exc}") from None
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise UnsupportedUri(f"only http and https URLs can be fetched, not {url!r}")
        if not parts.hostname:
            raise PermanentUriError(f"URL has no host: {url!r}")
        default = 443 if scheme == "https" else 80
        netloc = parts.netloc.rsplit("@", 1)[-1]
        auth = None
        if parts.username is not None:
            auth = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        return cls(url, scheme, parts.hostname, port or default, path, netloc, auth)


@functools.cache
def _pool_manager(pid: int, maxsize: int) -> urllib3.PoolManager:
    """Keep-alive pools for this process (keyed by pid: sockets must not cross a fork)."""
    return urllib3.PoolManager(num_pools=64, maxsize=maxsize, block=False, retries=False)


def _request(target: Target, ip: IPAddress, settings: Settings) -> urllib3.BaseHTTPResponse:
    pool_kwargs: dict[str, object] = {}
    if target.scheme == "https":  # connect to the checked IP, verify the named host
        pool_kwargs = {"server_hostname": target.host, "assert_hostname": target.host}
    manager = _pool_manager(os.getpid(), max(1, settings.fetch_threads))
    pool = manager.connection_from_host(str(ip), target.port, target.scheme, pool_kwargs)
    headers = {
        "Host": target.host_header,
        "User-Agent": USER_AGENT,
        "Accept": "image/*, */*;q=0.5",
        "Accept-Encoding": "identity",  # the byte cap then counts what crosses the wire
    }
    if target.auth:
        headers.update(urllib3.make_headers(basic_auth=target.auth))
    return pool.urlopen(
        "GET",
        target.path,
        headers=headers,
        redirect=False,
        retries=False,
        assert_same_host=False,
        preload_content=False,
        timeout=urllib3.Timeout(connect=settings.connect_timeout, read=settings.read_timeout),
    )


def _check_status(resp: urllib3.BaseHTTPResponse, url: str) -> None:
    status = resp.status
    if 200 <= status < 300:
        return
    try:
        phrase = http.HTTPStatus(status).phrase
    except ValueError:
        phrase = resp.reason or ""
    what = f"HTTP {status} {phrase} from {url}".replace("  ", " ")
    if status >= 500 or status in RETRYABLE_4XX:
        raise TransientUriError(what)
    if status in (404, 410):
        raise NotFound(what)
    if status in (401, 403, 407, 451):
        raise NotAllowed(what)
    raise PermanentUriError(what)


def _read_body(resp: urllib3.BaseHTTPResponse, settings: Settings, deadline: float) -> bytes:
    cap = settings.max_bytes
    length = resp.headers.get("Content-Length", "")
    if length.isdigit() and int(length) > cap:
        raise TooLarge(f"Content-Length is {length} bytes, over the {cap}-byte limit")
    body = bytearray()
    # read1, not stream()/read(): those loop until a full READ_SIZE arrives, so a server
    # dripping a byte at a time (each within the read timeout) would never reach the
    # deadline check. read1 returns whatever one socket read brings, so the deadline is
    # checked at least once per read timeout.
    while part := resp.read1(READ_SIZE):
        body += part
        if len(body) > cap:
            raise TooLarge(f"body is over the {cap}-byte limit")
        if time.monotonic() > deadline:
            raise TransientUriError(
                f"download took longer than {settings.fetch_deadline:g}s (BULKTAG_FETCH_DEADLINE)"
            )
    return bytes(body)


def _fetch_once(url: str, settings: Settings) -> bytes:
    """One attempt: follow redirects (guarding each hop), then read the body."""
    deadline = time.monotonic() + settings.fetch_deadline
    visited: set[str] = set()
    current = url
    for _ in range(settings.max_redirects + 1):
        target = Target.parse(current)
        ip = checked_address(target.host, target.port, settings)
        resp = _guarded(functools.partial(_request, target, ip, settings), current)
        if resp.status in REDIRECTS:
            location = resp.headers.get("Location")
            _discard(resp)
            if not location:
                raise PermanentUriError(f"HTTP {resp.status} redirect without a Location")
            visited.add(current)
            current = urljoin(current, location)
            if current in visited:
                raise PermanentUriError(f"redirect loop at {current} (from {url})")
            continue
        try:
            _check_status(resp, current)
            data = _guarded(functools.partial(_read_body, resp, settings, deadline), current)
        except BaseException:
            _discard(resp)
            raise
        resp.release_conn()  # read to the end: the connection can be reused
        return data
    raise PermanentUriError(f"too many redirects (more than {settings.max_redirects}) from {url}")


def _discard(resp: urllib3.BaseHTTPResponse) -> None:
    """Drop a response whose body is not read (or not fully): close its connection."""
    resp.close()
    resp.release_conn()


def _guarded(step: Callable[[], T], url: str) -> T:
    """Run ``step`` and translate urllib3's faults into bulktag's error types."""
    try:
        return step()
    except NewConnectionError as exc:  # before ConnectTimeoutError: it subclasses it
        raise TransientUriError(f"cannot connect to {url}: {_cause(exc)}") from None
    except ConnectTimeoutError:
        raise TransientUriError(f"connect timeout fetching {url}") from None
    except ReadTimeoutError as exc:
        timeout = getattr(exc, "message", "") or "read timed out"
        raise TransientUriError(f"read timeout fetching {url} ({timeout})") from None
    except SSLError as exc:
        raise PermanentUriError(f"TLS error fetching {url}: {_cause(exc)}") from None
    except LocationParseError as exc:
        raise PermanentUriError(f"malformed URL {url!r}: {exc}") from None
    except (ProtocolError, HTTPError, OSError) as exc:  # resets, truncated bodies
        raise TransientUriError(f"connection error fetching {url}: {_cause(exc)}") from None


def _cause(exc: BaseException) -> str:
    inner = exc.args[-1] if exc.args else exc
    return str(inner).split(": ", 1)[-1] if isinstance(inner, str) else str(inner)


def fetch_http(uri: str, settings: Settings) -> bytes:
    """Download ``uri`` under the byte cap, retrying transient faults with backoff.

    Raises:
        NotAllowed: the SSRF guard refused a hop, or the server answered 401/403.
        NotFound: the host does not resolve, or the server answered 404/410.
        TooLarge: the body is over ``settings.max_bytes``.
        TransientUriError: timeouts, resets or 5xx persisted through every attempt.
        PermanentUriError: other 4xx, TLS failures, redirect loops or too many redirects.
    """
    return retry_transient(
        lambda: _fetch_once(uri, settings),
        attempts=settings.fetch_attempts,
        base_delay=settings.fetch_backoff,
    )
