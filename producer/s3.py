"""The producer's side of S3: list a prefix as a stream of URIs, and write exports.

Listing is paginated and lazy (1,000 keys a page, one page in memory at a time),
so a prefix of millions of objects starts submitting after the first page.
``boto3`` is imported only when an ``s3://`` source or output is used.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Callable, Iterator
from pathlib import PurePosixPath
from typing import Any, TextIO

from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import BotoCoreError, ClientError

from producer.selection import Selection
from tasks.errors import ConfigError, UriError
from tasks.fetch_s3 import parse_s3_uri, s3_client, s3_error
from tasks.formats import IMAGE_EXTENSIONS
from tasks.settings import Settings

PAGE_SIZE = 1000  # S3's own maximum per ListObjectsV2 page


def is_image_key(key: str) -> bool:
    """True for a key with an image extension (S3 has no cheap content sniffing)."""
    return not key.endswith("/") and PurePosixPath(key).suffix.lower() in IMAGE_EXTENSIONS


def iter_s3_source(
    source: str, settings: Settings, selection: Selection | None = None
) -> Iterator[str]:
    """The image URIs one ``s3://`` source names.

    ``s3://bucket/key.jpg`` (an image extension, no trailing slash) is one object and is
    passed through unchecked: a missing key becomes that URI's error record. Anything
    else is a prefix: ``s3://bucket/``, ``s3://bucket/2024/`` and ``s3://bucket/2024``
    (read as ``2024/``, so ``2024-old/`` is not swept in) list every image key under it;
    ``selection`` (if given) adds ``--include-ext`` kinds and counts the keys left out.

    Raises:
        ConfigError: the bucket is missing, access is denied, or listing keeps failing.
    """
    try:
        bucket, key = parse_s3_uri(source)
    except UriError as exc:
        raise ConfigError(str(exc)) from None
    if key and is_image_key(key):
        yield source
        return
    prefix = key if not key or key.endswith("/") else key + "/"
    yield from list_prefix(s3_client(settings), bucket, prefix, selection)


def list_prefix(
    client: Any, bucket: str, prefix: str, selection: Selection | None = None
) -> Iterator[str]:
    """Every image key under ``prefix`` as an ``s3://`` URI, in S3's (lexical) order.

    Raises:
        ConfigError: listing failed after botocore's retries.
    """
    paginator = client.get_paginator("list_objects_v2")
    pages = paginator.paginate(
        Bucket=bucket, Prefix=prefix, PaginationConfig={"PageSize": PAGE_SIZE}
    )
    where = f"s3://{bucket}/{prefix}"
    takes = selection.takes_key if selection is not None else is_image_key
    try:
        for page in pages:
            for obj in page.get("Contents", ()):
                if not obj["Key"].endswith("/") and takes(obj["Key"]):
                    yield f"s3://{bucket}/{obj['Key']}"
    except (ClientError, BotoCoreError) as exc:
        raise ConfigError(f"cannot list {where}: {s3_error(exc, where)}") from None


def upload_export(
    uri: str,
    write: Callable[[TextIO], int],
    settings: Settings,
    content_type: str = "application/x-ndjson",
) -> int:
    """Write an export to ``s3://bucket/key`` and return how many records it holds.

    The export is spooled to a temporary file first, so memory stays flat for millions
    of records and boto3 can upload it in parallel multipart pieces.

    Args:
        uri: destination object, e.g. ``s3://bucket/results/job.jsonl``.
        write: writes the records to a text stream and returns their count.
        settings: endpoint and retry settings.
        content_type: the object's Content-Type.

    Raises:
        ConfigError: a URI without a key, or the upload failed.
    """
    try:
        bucket, key = parse_s3_uri(uri)
    except UriError as exc:
        raise ConfigError(str(exc)) from None
    if not key or key.endswith("/"):
        raise ConfigError(f"output must name an object, not a prefix: {uri}")
    with tempfile.TemporaryFile() as raw:
        text = io.TextIOWrapper(raw, encoding="utf-8", newline="")
        count = write(text)
        text.flush()
        text.detach()  # keep ``raw`` open for the upload
        raw.seek(0)
        try:
            s3_client(settings).upload_fileobj(
                raw, bucket, key, ExtraArgs={"ContentType": content_type}
            )
        except S3UploadFailedError as exc:
            raise ConfigError(f"cannot write {uri}: {exc}") from None
        except (ClientError, BotoCoreError) as exc:
            raise ConfigError(f"cannot write {uri}: {s3_error(exc, uri)}") from None
    return count
