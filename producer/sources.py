"""Turn what a user names (folder, file, ``@list``, ``-``, URI) into a stream of URIs.

Everything is a generator: a list of millions of URIs is never held in memory.
Local paths come out absolute, because workers may run in another directory.

A local path whose bytes are not UTF-8 (a Latin-1 name copied from an old camera or
Windows share) cannot travel as a JSON string as it is; it comes out as a
``file://`` URI with those bytes percent-encoded (``file:///photos/caf%E9.jpg``), which
workers decode back to the same bytes, so the file is tagged like its neighbours and
its record names it unambiguously.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TextIO
from urllib.parse import quote

from producer.selection import Selection, looks_like_image
from tasks.errors import ConfigError
from tasks.formats import IMAGE_EXTENSIONS
from tasks.settings import Settings

REMOTE_SCHEMES = ("s3://", "http://", "https://")
# Re-exported: the walker's image kinds live in tasks.formats, shared with the decoder.
__all__ = [
    "IMAGE_EXTENSIONS",
    "REMOTE_SCHEMES",
    "Selection",
    "iter_source",
    "iter_sources",
    "local_uri",
    "looks_like_image",
    "normalise",
    "read_list",
    "walk_folder",
]
_SCHEMES_BYTES = tuple(scheme.encode() for scheme in (*REMOTE_SCHEMES, "file://"))


def local_uri(path: Path) -> str:
    """``path`` made absolute, as a string every part of the pipeline can carry.

    Returns:
        The plain absolute path when it is valid UTF-8 (the common case); otherwise a
        ``file://`` URI with its raw bytes percent-encoded (RFC 8089), which
        ``tasks.fetch.local_path`` turns back into the same bytes.
    """
    text = str(path.absolute())
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # os.fsdecode kept the undecodable bytes as surrogates
        return "file://" + quote(os.fsencode(text), safe="/")
    return text


def walk_folder(root: Path, selection: Selection | None = None) -> Iterator[str]:
    """Every image under ``root``, recursively, in a stable (sorted) order.

    ``selection`` decides what is an image (plus any ``--include-ext`` kinds) and
    counts the files left out (default: the image kinds, uncounted).

    Raises:
        ConfigError: a folder under ``root`` cannot be listed. ``os.walk`` would skip it
            silently, and a job missing a whole folder of images looks complete.
    """
    takes = (selection or Selection()).takes_file
    for dirpath, dirnames, filenames in os.walk(root, onerror=_unreadable_folder):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath, name)
            if path.is_file() and takes(path):
                yield local_uri(path)


def _unreadable_folder(exc: OSError) -> None:
    """``os.walk``'s error hook: fail the walk instead of skipping the folder."""
    raise ConfigError(f"cannot read folder {exc.filename}: {exc.strerror or exc}") from exc


def read_list(lines: Iterable[str | bytes], name: str = "-") -> Iterator[str]:
    """URIs from a list, one per line; blank lines and ``#`` comments are skipped.

    Args:
        lines: the list's lines, as text or (from a file or stdin) as raw bytes.
        name: the list's name for error messages.

    Raises:
        ConfigError: a remote URI line that is not UTF-8 (it cannot name anything as
            it is). A *local path* line that is not UTF-8 names real bytes on disk and
            becomes a percent-encoded ``file://`` URI (``local_uri``) instead.
    """
    for number, raw in enumerate(lines, start=1):
        if isinstance(raw, bytes):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                if uri := _undecodable_line(raw, exc, name, number):
                    yield uri
                continue
        else:
            line = raw
        uri = line.strip()
        if uri and not uri.startswith("#"):
            yield normalise(uri)


def _undecodable_line(raw: bytes, exc: UnicodeDecodeError, name: str, number: int) -> str:
    """The URI of a list line that is not UTF-8 ("" for a comment), or a one-line error."""
    text = raw.strip()
    if not text or text.startswith(b"#"):
        return ""
    if text.startswith(_SCHEMES_BYTES):
        raise ConfigError(
            f"{name} line {number}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
            f"{exc.start + 1}); save the list as UTF-8 or percent-encode the URI"
        )
    return local_uri(Path(os.fsdecode(text)).expanduser())


def normalise(uri: str) -> str:
    """Remote URIs pass through; local paths become absolute."""
    if uri.startswith(REMOTE_SCHEMES) or uri.startswith("file://"):
        return uri
    return str(Path(uri).expanduser().absolute())


def iter_source(
    source: str,
    stdin: TextIO | None = None,
    settings: Settings | None = None,
    selection: Selection | None = None,
) -> Iterator[str]:
    """The URIs one command-line source names.

    An ``s3://`` source is listed as a prefix (see ``producer.s3.iter_s3_source``);
    ``settings`` supply its endpoint (default: from the environment). ``selection``
    filters folder walks and prefix listings and counts what they skip; a file or URI
    named directly is always taken.

    Raises:
        ConfigError: a local path or list file that does not exist, or an S3 prefix
            that cannot be listed.
    """
    if source == "-":
        yield from read_list(stdin or sys.stdin.buffer, "stdin")
        return
    if source.startswith("@"):
        list_path = Path(source[1:]).expanduser()
        if not list_path.is_file():
            raise ConfigError(f"URI list file not found: {list_path}")
        with open(list_path, "rb") as fh:  # bytes: a bad line must not sink the rest
            yield from read_list(fh, str(list_path))
        return
    if source.startswith("s3://"):
        from producer.s3 import iter_s3_source  # boto3 only when S3 is used

        yield from iter_s3_source(source, settings or Settings.from_env(), selection)
        return
    if source.startswith(REMOTE_SCHEMES):
        yield source
        return
    path = Path(source[7:] if source.startswith("file://") else source).expanduser()
    if path.is_dir():
        yield from walk_folder(path, selection)
    elif path.is_file():
        yield local_uri(path)
    else:
        raise ConfigError(f"no such file or directory: {source}")


def iter_sources(
    sources: Iterable[str],
    stdin: TextIO | None = None,
    settings: Settings | None = None,
    selection: Selection | None = None,
) -> Iterator[str]:
    for source in sources:
        yield from iter_source(source, stdin, settings, selection)


def local_roots(sources: list[str]) -> list[Path]:
    """The local folders and files named on the command line: the worker may read them.

    ``BULKTAG_ALLOWED_ROOTS`` (default: home and the working directory) guards workers
    that serve a shared queue; ``bulktag run``'s own worker reads what its user named.
    """
    roots = []
    for source in sources:
        if source == "-" or source.startswith(("@", *REMOTE_SCHEMES)):
            continue
        path = Path(source.removeprefix("file://")).expanduser()
        if path.exists():
            roots.append(path.resolve())
    return roots
