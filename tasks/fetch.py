"""Bytes for a URI, behind one small interface.

Local paths and ``file://`` URIs are read only from the operator's allowed roots
(``BULKTAG_ALLOWED_ROOTS``), judged by the real path of the file actually opened
(``..`` and symlinks resolved), and never past the byte cap. Other schemes are
registered in ``FETCHERS``: ``s3://`` (``tasks.fetch_s3``) and ``http(s)://``
(``tasks.fetch_http``), each retrying its own transient faults.
"""

from __future__ import annotations

import errno
import functools
import os
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote_to_bytes, urlsplit

from tasks.errors import (
    NotAllowed,
    NotFound,
    PermanentUriError,
    TooLarge,
    UnsupportedUri,
    UriError,
)
from tasks.fetch_http import fetch_http
from tasks.fetch_s3 import fetch_s3
from tasks.settings import Settings

Fetch = Callable[[str, Settings], bytes]


def local_path(uri: str) -> Path:
    """The filesystem path a ``file://`` URI or plain path names.

    Percent-escapes are decoded to *bytes*, then to a path the way the OS names files
    (``os.fsdecode``), so ``file:///photos/caf%E9.jpg`` opens the Latin-1 name the
    producer found on disk (``producer.sources.local_uri``) rather than ``caf\ufffd``.
    """
    if uri.startswith("file://"):
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise UnsupportedUri(f"file URI with a remote host is not supported: {uri}")
        return Path(os.fsdecode(unquote_to_bytes(parts.path)))
    return Path(uri)


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)


@functools.lru_cache(maxsize=64)
def resolved_roots(roots: tuple[Path, ...]) -> tuple[Path, ...]:
    """The allowed roots with symlinks resolved, once per process, not once per file."""
    return tuple(root.resolve() for root in roots)


def within(path: Path, roots: tuple[Path, ...]) -> bool:
    """True when ``path`` lies under one of ``roots`` (by path parts, not text)."""
    return any(path.is_relative_to(root) for root in roots)


def _fd_path(fd: int) -> Path | None:
    """The path the kernel resolved for an open file, or None without ``/proc``.

    It names the file actually opened, so a symlink swapped between a check and the
    open cannot redirect the read, and it costs one syscall where ``realpath`` costs
    an ``lstat`` per path component.
    """
    try:
        return Path(os.readlink(f"/proc/self/fd/{fd}"))
    except OSError:
        return None


def _read_capped(fd: int, path: Path, max_bytes: int) -> bytes:
    """Read an open regular file, refusing it past ``max_bytes``."""
    size = os.fstat(fd).st_size
    if size > max_bytes:
        raise TooLarge(f"file is {size} bytes, over the {max_bytes}-byte limit")
    with open(fd, "rb", closefd=False) as fh:
        # Ask for the stat size plus one byte, not the cap: read(n) allocates n bytes
        # up front, and a 50 MB buffer per photo dominated deduplicated re-runs.
        # The extra byte still catches a file that grew past the cap after stat.
        data = fh.read(min(size, max_bytes) + 1)
        if len(data) > size:
            data += fh.read(max_bytes + 1 - len(data))
    if len(data) > max_bytes:  # grew between stat and read
        raise TooLarge(f"file is over the {max_bytes}-byte limit")
    return data


def _open_error(path: Path, exc: OSError) -> UriError:
    if isinstance(exc, FileNotFoundError):
        return NotFound(f"no such file: {path}")
    if isinstance(exc, NotADirectoryError):
        return NotFound(f"no such file: {path} (a parent is not a directory)")
    if isinstance(exc, PermissionError):
        return NotAllowed(f"permission denied reading {path}")
    if exc.errno == errno.ELOOP:
        return NotAllowed(f"cannot resolve {path}: too many levels of symbolic links")
    return PermanentUriError(f"cannot read {path}: {os.strerror(exc.errno or 0)}")


def fetch_local(uri: str, settings: Settings) -> bytes:
    """Read a local file inside the allowed roots, at most ``settings.max_bytes``.

    A path that names a root without ``..`` is opened first (non-blocking, so a FIFO
    cannot hang the worker) and the *opened* file's real path is checked, which is
    immune to symlink swaps. Any other path is resolved first and opened only when
    it resolves inside a root, then checked the same way after the open.

    Raises:
        NotAllowed: relative path, or it resolves outside every allowed root.
        NotFound: no such file, or not a regular file.
        TooLarge: the file is bigger than the byte cap.
    """
    path = local_path(uri)
    if not path.is_absolute():
        raise NotAllowed(f"relative path not allowed (submit resolves paths): {uri}")
    roots = resolved_roots(settings.allowed_roots)
    target = path
    if ".." in path.parts or not within(path, roots + settings.allowed_roots):
        try:
            target = path.resolve(strict=True)
        except FileNotFoundError:
            raise NotFound(f"no such file: {path}") from None
        except (OSError, RuntimeError) as exc:  # symlink loops, permission on a parent
            raise NotAllowed(f"cannot resolve {path}: {exc}") from None
        if not within(target, roots):
            raise _outside(path, target, roots)
    try:
        fd = os.open(target, _OPEN_FLAGS)
    except OSError as exc:
        raise _open_error(path, exc) from None
    try:
        real = _fd_path(fd) or target.resolve()
        if not within(real, roots):
            raise _outside(path, real, roots)
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise NotFound(f"not a regular file: {path}")
        return _read_capped(fd, path, settings.max_bytes)
    except OSError as exc:
        raise PermanentUriError(f"cannot read {path}: {os.strerror(exc.errno or 0)}") from None
    finally:
        os.close(fd)


def _outside(path: Path, real: Path, roots: tuple[Path, ...]) -> NotAllowed:
    return NotAllowed(
        f"{path} resolves to {real}, outside the allowed roots "
        f"({', '.join(map(str, roots))}); set BULKTAG_ALLOWED_ROOTS to allow it"
    )


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
