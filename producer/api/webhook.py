"""Tell another application when a job finishes: one POST of its final status JSON.

A small watcher thread in the API process polls the status of the jobs that asked for a
webhook and, once a job is ``done`` or ``cancelled``, POSTs ``status --json`` to its URL
(timeout, a few retries with backoff). Deliveries are at most once per API process:
they live in memory, so a restart forgets jobs still being watched.

The URL is checked by the same SSRF guard workers use for ``http(s)://`` images
(``tasks.ssrf.checked_address``): private, loopback and metadata addresses are
refused unless ``BULKTAG_ALLOW_PRIVATE_NETWORKS=true``; the connection goes to the
checked address, so a DNS answer that changes in between cannot steer it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError

from tasks.errors import BulktagError, ConfigError, PermanentUriError, TransientUriError
from tasks.fetch_http import USER_AGENT, Target
from tasks.records import JobStatus
from tasks.retry import retry_transient
from tasks.settings import Settings
from tasks.ssrf import checked_address
from tasks.store import ResultStore

log = logging.getLogger("bulktag.api.webhook")

DEFAULT_TIMEOUT = 5.0  # seconds to connect, and again to read the answer
DEFAULT_ATTEMPTS = 4  # tries per delivery on timeouts, resets, 5xx, 408 and 429
DEFAULT_BACKOFF = 1.0  # first retry waits up to this (full jitter), doubling
DEFAULT_POLL = 1.0  # seconds between status checks of watched jobs
EVENT = "job.finished"

Deliver = Callable[[str, dict[str, Any]], None]
Describe = Callable[[JobStatus], dict[str, Any]]


def check_webhook_url(url: str, settings: Settings) -> None:
    """Refuse a webhook URL before the job starts, so the client hears about it now.

    Raises:
        ConfigError: not an http(s) URL with a host.
        NotAllowed: the SSRF guard refuses where it points (guard on).
        NotFound: the host does not resolve.
    """
    try:
        target = Target.parse(url)
    except PermanentUriError as exc:
        raise ConfigError(f"webhook_url: {exc}") from None
    checked_address(target.host, target.port, settings)


def signature(token: str, body: bytes) -> str:
    """``sha256=<hex HMAC>`` of the body keyed by the API token, so a receiver can tell
    a bulktag webhook from a forged one."""
    return "sha256=" + hmac.new(token.encode(), body, hashlib.sha256).hexdigest()


def post_once(url: str, body: bytes, headers: dict[str, str], settings: Settings) -> int:
    """One POST to ``url`` through the SSRF guard; the HTTP status code.

    Raises:
        TransientUriError: connect/read faults, 5xx, 408, 429 (worth a retry).
        PermanentUriError: other non-2xx answers (a redirect counts: not followed).
        NotAllowed: the SSRF guard refused the address.
    """
    target = Target.parse(url)
    ip = checked_address(target.host, target.port, settings)
    pool_kwargs: dict[str, object] = {}
    if target.scheme == "https":  # connect to the checked IP, verify the named host
        pool_kwargs = {"server_hostname": target.host, "assert_hostname": target.host}
    with urllib3.PoolManager(retries=False) as manager:
        pool = manager.connection_from_host(str(ip), target.port, target.scheme, pool_kwargs)
        all_headers = {
            "Host": target.host_header,
            "User-Agent": USER_AGENT,
            "Content-Type": "application/json",
            **headers,
        }
        if target.auth:
            all_headers.update(urllib3.make_headers(basic_auth=target.auth))
        try:
            resp = pool.urlopen(
                "POST",
                target.path,
                body=body,
                headers=all_headers,
                redirect=False,
                retries=False,
                assert_same_host=False,
                timeout=urllib3.Timeout(connect=DEFAULT_TIMEOUT, read=DEFAULT_TIMEOUT),
            )
        except (HTTPError, OSError) as exc:
            raise TransientUriError(f"webhook {url}: {type(exc).__name__}: {exc}") from None
    if 200 <= resp.status < 300:
        return resp.status
    if resp.status >= 500 or resp.status in (408, 429):
        raise TransientUriError(f"webhook {url} answered HTTP {resp.status}")
    raise PermanentUriError(f"webhook {url} answered HTTP {resp.status}")


def deliver(
    url: str,
    status: dict[str, Any],
    settings: Settings,
    attempts: int = DEFAULT_ATTEMPTS,
    backoff: float = DEFAULT_BACKOFF,
) -> None:
    """POST ``status`` to ``url``, retrying transient faults with backoff.

    Raises:
        UriError: the last fault once the attempts are spent, or a permanent refusal.
    """
    body = json.dumps(status, sort_keys=True).encode()
    headers = {"X-Bulktag-Event": EVENT}
    if settings.api_token:
        headers["X-Bulktag-Signature"] = signature(settings.api_token, body)
    retry_transient(
        lambda: post_once(url, body, headers, settings), attempts=attempts, base_delay=backoff
    )


class WebhookWatcher:
    """Polls watched jobs and delivers each one's webhook once, when it finishes.

    Args:
        store: where job status is read.
        settings: the SSRF switch and the API token (which signs deliveries).
        poll: seconds between checks.
        send: delivers one ``(url, body)`` (default: ``deliver`` with retries).
        describe: the body for a finished status (default: ``status --json``'s dict).
    """

    def __init__(
        self,
        store: ResultStore,
        settings: Settings,
        poll: float = DEFAULT_POLL,
        send: Deliver | None = None,
        describe: Describe | None = None,
    ) -> None:
        self.store = store
        self.settings = settings
        self.poll = poll
        self._describe: Describe = describe or (lambda st: st.to_dict())
        self._send: Deliver = send or (lambda url, st: deliver(url, st, settings))
        self._watched: dict[str, str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="webhook")

    def watch(self, job_id: str, url: str) -> None:
        """Deliver ``job_id``'s final status to ``url`` once it finishes."""
        with self._lock:
            self._watched[job_id] = url
        if self._thread is None or not self._thread.is_alive():
            self.start()

    def watching(self) -> dict[str, str]:
        with self._lock:
            return dict(self._watched)

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="webhook-watcher", daemon=True)
        self._thread.start()

    def stop(self, wait: bool = True) -> None:
        """Stop polling; with ``wait``, let deliveries already started finish."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.poll + 5)
        self._pool.shutdown(wait=wait, cancel_futures=not wait)

    def _run(self) -> None:
        while not self._stop.wait(self.poll):
            try:
                self.check_once()
            except Exception:  # Redis blips must not kill the watcher
                log.exception("webhook watcher: status check failed; retrying")

    def check_once(self) -> int:
        """Hand every finished watched job to a delivery thread; how many were."""
        handed = 0
        for job_id, url in self.watching().items():
            try:
                status = self.store.status(job_id)
            except BulktagError:  # JobNotFound: deleted; nothing to report
                self._forget(job_id)
                continue
            if status.finished:
                self._forget(job_id)
                self._pool.submit(self._deliver, job_id, url, self._describe(status))
                handed += 1
        return handed

    def _forget(self, job_id: str) -> None:
        with self._lock:
            self._watched.pop(job_id, None)

    def _deliver(self, job_id: str, url: str, status: dict[str, Any]) -> None:
        try:
            self._send(url, status)
            log.info("webhook for job %s delivered to %s", job_id, url)
        except Exception as exc:
            log.warning("webhook for job %s to %s failed: %s", job_id, url, exc)
