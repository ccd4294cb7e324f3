"""Bytes from ``s3://bucket/key`` URIs with boto3, and the S3 client both sides share.

Credentials come from the standard AWS chain (environment, shared config and
credentials files or ``AWS_PROFILE``, SSO, container and instance roles); bulktag
never takes keys itself. The endpoint is ``BULKTAG_S3_ENDPOINT_URL`` when set, else
botocore's own ``AWS_ENDPOINT_URL_S3`` / ``AWS_ENDPOINT_URL`` (MinIO, Ceph, R2...),
else AWS.

Retries: botocore's *standard* mode retries throttling (``SlowDown``, 503), other
5xx and connection faults with exponential backoff and jitter, up to
``BULKTAG_FETCH_ATTEMPTS`` tries per call. A body that breaks mid-stream, which
botocore does not retry, is fetched again by ``retry_transient``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    IncompleteReadError,
    NoCredentialsError,
    ParamValidationError,
    ResponseStreamingError,
)
from botocore.exceptions import ReadTimeoutError as BotoReadTimeout
from urllib3.exceptions import HTTPError as Urllib3Error

from tasks.errors import (
    NotAllowed,
    NotFound,
    PermanentUriError,
    TooLarge,
    TransientUriError,
    UnsupportedUri,
    UriError,
)
from tasks.retry import retry_transient
from tasks.settings import Settings

NOT_FOUND = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "NotFound", "404"})
DENIED = frozenset(
    {
        "AccessDenied",
        "AllAccessDisabled",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
        "InvalidToken",
        "TokenRefreshRequired",
        "403",
    }
)
THROTTLED = frozenset({"SlowDown", "Throttling", "ThrottlingException", "RequestTimeout"})

_clients: dict[tuple[Any, ...], Any] = {}
_clients_lock = threading.Lock()


class BodyInterrupted(TransientUriError):
    """The object's body broke off mid-stream; the whole GET is worth another try."""


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """``s3://bucket/key`` -> ``(bucket, key)``; the key may be empty (a bucket root).

    Keys are taken verbatim (not percent-decoded), as the AWS CLI writes them.

    Raises:
        UnsupportedUri: not an ``s3://`` URI.
        PermanentUriError: no bucket name.
    """
    if not uri.startswith("s3://"):
        raise UnsupportedUri(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not bucket:
        raise PermanentUriError(f"s3 URI has no bucket: {uri!r}")
    return bucket, key


def client_config(settings: Settings) -> Config:
    """botocore settings: standard retries, our timeouts, a pool as wide as our threads."""
    return Config(
        retries={"mode": "standard", "total_max_attempts": settings.fetch_attempts},
        connect_timeout=settings.connect_timeout,
        read_timeout=settings.read_timeout,
        max_pool_connections=max(10, settings.fetch_threads),
        user_agent_extra="bulktag",
    )


def s3_client(settings: Settings) -> Any:
    """A cached S3 client for this process and these settings (clients are thread-safe).

    Each client gets its own boto3 Session: creating clients from the shared default
    session is not thread-safe, and the cache is keyed by pid so no connection pool
    crosses a fork.
    """
    key = (
        os.getpid(),
        settings.s3_endpoint_url,
        settings.fetch_attempts,
        settings.connect_timeout,
        settings.read_timeout,
        settings.fetch_threads,
    )
    with _clients_lock:
        client = _clients.get(key)
        if client is None:
            session = boto3.session.Session()
            client = session.client(
                "s3", endpoint_url=settings.s3_endpoint_url, config=client_config(settings)
            )
            _clients[key] = client
        return client


def s3_error(exc: BotoCoreError | ClientError, uri: str) -> UriError:
    """The bulktag error type and human reason for a failed S3 call on ``uri``."""
    if isinstance(exc, NoCredentialsError):
        return NotAllowed(
            f"no AWS credentials found for {uri} (set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, "
            "AWS_PROFILE, or run with an instance/container role)"
        )
    if isinstance(exc, ParamValidationError):
        return PermanentUriError(f"invalid S3 request for {uri}: {exc}")
    if not isinstance(exc, ClientError):
        return TransientUriError(f"S3 connection error for {uri}: {exc}")
    error = exc.response.get("Error", {})
    meta = exc.response.get("ResponseMetadata", {})
    code = str(error.get("Code", ""))
    status = int(meta.get("HTTPStatusCode") or 0)
    detail = f"{code} (HTTP {status})" if code != str(status) else f"HTTP {status}"
    if code == "NoSuchBucket":
        return NotFound(f"no such S3 bucket for {uri}")
    if code in NOT_FOUND or status == 404:
        return NotFound(f"no such S3 object: {uri}")
    if code in DENIED or status == 403:
        return NotAllowed(f"S3 denied reading {uri}: {detail}; check credentials and policy")
    if code in THROTTLED or status >= 500:
        tries = int(meta.get("RetryAttempts") or 0) + 1
        return TransientUriError(f"S3 {detail} for {uri} after {tries} attempts")
    return PermanentUriError(f"S3 refused {uri}: {detail} {error.get('Message', '')}".strip())


def _get_once(uri: str, bucket: str, key: str, settings: Settings) -> bytes:
    cap = settings.max_bytes
    try:
        resp = s3_client(settings).get_object(Bucket=bucket, Key=key)
    except (ClientError, BotoCoreError) as exc:
        raise s3_error(exc, uri) from None
    body = resp["Body"]
    try:
        size = int(resp.get("ContentLength") or 0)
        if size > cap:  # refuse before reading a byte of it
            raise TooLarge(f"object is {size} bytes, over the {cap}-byte limit")
        data: bytes = body.read(cap + 1)
    except (
        IncompleteReadError,
        ResponseStreamingError,
        BotoReadTimeout,
        Urllib3Error,
        OSError,
    ) as exc:
        raise BodyInterrupted(f"S3 body for {uri} broke off: {exc}") from None
    finally:
        body.close()
    if len(data) > cap:  # ContentLength absent or wrong
        raise TooLarge(f"object is over the {cap}-byte limit")
    return data


def fetch_s3(uri: str, settings: Settings) -> bytes:
    """Read the object ``uri`` names, at most ``settings.max_bytes``.

    Raises:
        NotFound: no such key or bucket.
        NotAllowed: access denied, bad or missing credentials.
        TooLarge: the object is over the byte cap.
        TransientUriError: throttling, 5xx or connection faults outlasted every retry.
        PermanentUriError: a URI without a key, or another 4xx refusal.
    """
    bucket, key = parse_s3_uri(uri)
    if not key or key.endswith("/"):
        raise PermanentUriError(f"s3 URI names no object (a prefix?): {uri}")
    return retry_transient(
        lambda: _get_once(uri, bucket, key, settings),
        attempts=settings.fetch_attempts,
        base_delay=settings.fetch_backoff,
        retry_on=(BodyInterrupted,),
    )
