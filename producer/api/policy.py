"""What a remote client may ask the API to enumerate.

The CLI runs as the operator, so it may read any folder or list file it can open. The
API runs for *other* applications, so local sources are held to the same allowed roots
that bound what workers read (``BULKTAG_ALLOWED_ROOTS``): without that, a client could
submit ``@/etc/passwd`` and read the file back, line by line, as the job's URIs.
"""

from __future__ import annotations

from pathlib import Path

from producer.sources import REMOTE_SCHEMES
from tasks.errors import ConfigError, NotAllowed, UriError
from tasks.fetch import local_path, resolved_roots, within
from tasks.settings import Settings


def inside_allowed_roots(path: Path, settings: Settings) -> bool:
    """True when ``path`` (after resolving ``..`` and symlinks) lies under an allowed root."""
    return within(path.resolve(), resolved_roots(settings.allowed_roots))


def _local(text: str, settings: Settings, what: str) -> Path:
    try:
        path = local_path(text)
    except UriError as exc:
        raise ConfigError(str(exc)) from None
    if not path.is_absolute():
        raise ConfigError(f"{what} must be an absolute path (the API has no working directory)")
    if not inside_allowed_roots(path, settings):
        raise NotAllowed(f"{what} {text} is outside the allowed roots (BULKTAG_ALLOWED_ROOTS)")
    return path


def check_source(source: str, settings: Settings) -> None:
    """Refuse a ``source`` the API must not enumerate.

    Raises:
        ConfigError: stdin, a relative path, an unknown scheme.
        NotAllowed: a local folder, file or list file outside the allowed roots.
    """
    if source == "-":
        raise ConfigError("source '-' (stdin) means nothing over HTTP; send 'uris' instead")
    if source.startswith(REMOTE_SCHEMES):
        return
    if source.startswith("@"):
        _local(source[1:], settings, "list file")
        return
    if "://" in source and not source.startswith("file://"):
        raise ConfigError(f"unsupported source scheme: {source.split('://', 1)[0]}://")
    _local(source, settings, "source")


def check_uris(uris: list[str], settings: Settings) -> None:
    """Refuse explicit URIs the API must not enqueue; local ones must exist.

    A missing local file is refused here, before anything is enqueued, so a long URI list
    never stops half-way through enumeration.

    Raises:
        ConfigError: an empty, relative, ``@``/``-`` or unknown-scheme entry, or a local
            file that does not exist.
        NotAllowed: a local path outside the allowed roots.
    """
    for uri in uris:
        if not uri or uri == "-" or uri.startswith("@"):
            raise ConfigError(f"not a URI: {uri!r} (list files and stdin are sources)")
        if uri.startswith(REMOTE_SCHEMES):
            continue
        if "://" in uri and not uri.startswith("file://"):
            raise ConfigError(f"unsupported URI scheme: {uri.split('://', 1)[0]}://")
        if not _local(uri, settings, "path").exists():
            raise ConfigError(f"no such file or directory: {uri}")
