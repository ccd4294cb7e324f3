"""Bytes for a URI, behind one small interface.

Local paths and ``file://`` URIs are read only from the operator's allowed roots
(``BULKTAG_ALLOWED_ROOTS``), after resolving ``..`` and symlinks, and never past the
byte cap. Other schemes are registered in ``FETCHERS``: ``s3://`` (``tasks.fetch_s3``)
and ``http(s)://`` (``tasks.fetch_http``), each retrying its own transient faults.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tasks.errors import NotAllowed, NotFound, PermanentUriError, TooLarge, UnsupportedUri
from tasks.fetch_http import fetch_http
from tasks.fetch_s3 import fetch_s3
from worker.settings import Settings

Fetch = Callable[[str, Settings], bytes]


def local_path(uri: str) -> Path:
    """The filesystem path a ``file://`` URI or plain path names."""
    if uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedUri(f"file URI with a remote host is not supported: {uri}")
        return Path(unquote(parts.path))
    return Path(uri)


def fetch_local(uri: str, settings: Settings) -> bytes:
    """Read a local file inside the allowed roots, at most ``settings.max_bytes``.

    Raises:
        NotAllowed: relative path, or it resolves outside every allowed root.
        NotFound: no such file.
        TooLarge: the file is bigger than the byte cap.
    """
    path = local_path(uri)
    if not path.is_absolute():
        raise NotAllowed(f"relative path not allowed (submit resolves paths): {uri}")
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise NotFound(f"no such file: {path}") from None
    except (OSError, RuntimeError) as exc:  # symlink loops, permission on a parent
        raise NotAllowed(f"cannot resolve {path}: {exc}") from None
    roots = [r.resolve() for r in settings.allowed_roots]
    if not any(resolved.is_relative_to(root) for root in roots):
        raise NotAllowed(
            f"{path} resolves to {resolved}, outside the allowed roots "
            f"({', '.join(map(str, roots))}); set BULKTAG_ALLOWED_ROOTS to allow it"
        )
    if not resolved.is_file():
        raise NotFound(f"not a regular file: {path}")
    try:
        size = resolved.stat().st_size
        if size > settings.max_bytes:
            raise TooLarge(f"file is {size} bytes, over the {settings.max_bytes}-byte limit")
        with open(resolved, "rb") as fh:
            # Ask for the stat size plus one byte, not the cap: read(n) allocates n bytes
            # up front, and a 50 MB buffer per photo dominated deduplicated re-runs.
            # The extra byte still catches a file that grew past the cap after stat.
            data = fh.read(min(size, settings.max_bytes) + 1)
            if len(data) > size:
                data += fh.read(settings.max_bytes + 1 - len(data))
    except PermissionError:
        raise NotAllowed(f"permission denied reading {path}") from None
    except IsADirectoryError:
        raise NotFound(f"not a regular file: {path}") from None
    except OSError as exc:
        raise PermanentUriError(f"cannot read {path}: {os.strerror(exc.errno or 0)}") from None
    if len(data) > settings.max_bytes:  # grew between stat and read
        raise TooLarge(f"file is over the {settings.max_bytes}-byte limit")
    return data


FETCHERS: dict[str, Fetch] = {
    "": fetch_local,
    "file": fetch_local,
    "s3": fetch_s3,
    "http": fetch_http,
    "https": fetch_http,
}


def scheme_of(uri: str) -> str:
    if "://" not in uri:
        return ""
    return uri.split("://", 1)[0].lower()


def fetch_bytes(uri: str, settings: Settings) -> bytes:
    """Fetch ``uri`` with the fetcher for its scheme.

    Raises:
        UnsupportedUri: no fetcher for the scheme.
        UriError: whatever the fetcher raises for this URI.
    """
    fetch = FETCHERS.get(scheme_of(uri))
    if fetch is None:
        raise UnsupportedUri(
            f"unsupported URI scheme {scheme_of(uri)!r} "
            "(supported: local paths, file://, s3://, http://, https://)"
        )
    return fetch(uri, settings)
