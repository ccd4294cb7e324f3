"""Uploaded files on disk: sniffed by content, stored by sha256, pruned by age.

Layout under ``BULKTAG_UPLOAD_DIR`` (default ``~/.cache/bulktag/uploads``)::

    ab/abcdef...64 hex....jpg     one file per distinct content, extension from its bytes
    .incoming/                    parts being received (renamed into place when complete)

A file is written once, whoever uploads the same bytes again: the second upload only
refreshes its modification time, which is what retention measures. Workers read these
files like any other local URI, so the folder is one of their allowed roots
(``Settings.from_env`` adds it) and must be storage they share with the API.

How big it gets: at most ``BULKTAG_UPLOAD_MAX_BYTES`` per distinct file, kept until it
is older than ``BULKTAG_UPLOAD_RETENTION_DAYS`` and no stored upload job uses it
(``producer.upload_job.prune_uploads``).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from tasks import formats
from tasks.formats import HEAD_BYTES

# The extension each image kind (``tasks.formats.sniff``, the decoder's own list) is
# stored under. The name a client sends is never trusted: a text file named photo.jpg is
# text, an iPhone photo named photo.jpg is HEIC. The extension is for people: workers
# decide how to decode from the bytes (a TIFF-structured RAW file stays RAW).
_EXTENSIONS: dict[str, str] = {
    "jpeg": "jpg",
    "png": "png",
    "gif": "gif",
    "bmp": "bmp",
    "webp": "webp",
    "tiff": "tif",
    "heif": "heic",
    "avif": "avif",
    "raw": "raw",
}
# What common non-images look like, so the error says what the file is.
_OTHER_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "a PDF document"),
    (b"PK\x03\x04", "a ZIP archive (or an office document)"),
    (b"\x1f\x8b", "gzip-compressed data"),
    (b"\x7fELF", "an executable"),
    (b"<svg", "an SVG drawing (vector images are not tagged)"),
    (b"<?xml", "an XML document"),
)
SNIFF_BYTES = HEAD_BYTES
HASH_CHUNK = 1 << 20


def sniff_image(head: bytes) -> str | None:
    """The extension to store a file under whose first bytes are ``head``; None when
    they announce no image format bulktag decodes."""
    kind = formats.sniff(head)
    return _EXTENSIONS.get(kind) if kind else None


def describe_content(head: bytes) -> str:
    """A few words on what a non-image file's first bytes look like, for its error."""
    if not head:
        return "an empty file"
    for magic, what in _OTHER_MAGIC:
        if head.startswith(magic):
            return what
    if head[4:8] == b"ftyp":  # ISO media that is not HEIC/AVIF/CR3: MP4, MOV, 3GP...
        return "a video or other ISO media file (MP4/MOV)"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 3:  # not just a character cut at the end of ``head``
            return "unrecognised binary data"
        text = head[: exc.start].decode("utf-8")
    if all(ch.isprintable() or ch in "\t\r\n" for ch in text):
        return "text"
    return "unrecognised binary data"


@dataclass(frozen=True)
class ReceivedFile:
    """One uploaded part once fully received.

    ``path`` is the stored file for an image within the cap, else None; ``error`` then
    says why the part was not stored (too large, not an image, empty).
    """

    filename: str
    sha256: str
    size: int
    path: Path | None
    error: str | None


class UploadSink:
    """Receives one file part: hashes it, keeps its first bytes, spools it to disk.

    Bytes past ``max_bytes`` are hashed but not written, so a huge part costs no disk;
    the finished part is renamed into its content address by ``UploadStore.commit``.
    """

    def __init__(self, incoming: Path, filename: str, max_bytes: int) -> None:
        self.filename = filename
        self.max_bytes = max_bytes
        self.size = 0
        self.head = b""
        self._hash = hashlib.sha256()
        fd, name = tempfile.mkstemp(dir=incoming, prefix="part-")
        self._path: Path | None = Path(name)
        self._file: BinaryIO | None = os.fdopen(fd, "wb")

    def write(self, data: bytes) -> None:
        self._hash.update(data)
        if len(self.head) < SNIFF_BYTES:
            self.head += data[: SNIFF_BYTES - len(self.head)]
        self.size += len(data)
        if self._file is None:
            return
        if self.size <= self.max_bytes:
            self._file.write(data)
        else:  # over the cap: stop spending disk on it
            self.discard()

    @property
    def over_cap(self) -> bool:
        return self.size > self.max_bytes

    @property
    def sha256(self) -> str:
        return self._hash.hexdigest()

    def spooled(self) -> Path | None:
        """The spooled file (closed), or None once discarded."""
        if self._file is not None:
            self._file.close()
            self._file = None
        return self._path

    def discard(self) -> None:
        """Close and remove the spooled bytes (over the cap, not an image, request failed)."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self._path is not None:
            self._path.unlink(missing_ok=True)
            self._path = None


@dataclass(frozen=True)
class PruneReport:
    """What one pruning pass removed and kept."""

    removed: int
    freed_bytes: int
    kept: int


class UploadStore:
    """The content-addressed upload folder (see the module doc for its layout)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.incoming = root / ".incoming"

    def prepare(self) -> None:
        """Create the folder (readable by workers running as another user)."""
        for folder in (self.root, self.incoming):
            folder.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(PermissionError):  # a mount point owned by another user
                os.chmod(folder, 0o755)

    def sink(self, filename: str, max_bytes: int) -> UploadSink:
        return UploadSink(self.incoming, filename, max_bytes)

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def finish(self, sink: UploadSink) -> ReceivedFile:
        """Judge a received part: store it under its content address or say why not."""
        name, digest, size = sink.filename, sink.sha256, sink.size
        if sink.over_cap:
            sink.discard()
            why = f"file is {size} bytes, over the {sink.max_bytes}-byte upload limit"
            return ReceivedFile(name, digest, size, None, f"{why} (BULKTAG_UPLOAD_MAX_BYTES)")
        ext = sniff_image(sink.head)
        if ext is None:
            sink.discard()
            what = describe_content(sink.head)
            why = f"not an image: its content is {what}, whatever its name says"
            return ReceivedFile(name, digest, size, None, why)
        spooled = sink.spooled()
        assert spooled is not None
        return ReceivedFile(name, digest, size, self.commit(spooled, digest, ext), None)

    def commit(self, spooled: Path, sha256: str, ext: str) -> Path:
        """Move ``spooled`` to its content address; same bytes already there: keep those."""
        target = self.path_for(sha256, ext)
        if target.exists():
            spooled.unlink(missing_ok=True)
            os.utime(target)  # seen again: retention counts from now
            return target
        target.parent.mkdir(exist_ok=True)
        os.chmod(spooled, 0o644)
        os.replace(spooled, target)  # atomic: a worker never reads half a file
        return target

    def prune(
        self, older_than_seconds: float, in_use: Callable[[Path], bool], now: float | None = None
    ) -> PruneReport:
        """Remove stored files last uploaded longer ago than ``older_than_seconds``
        that ``in_use`` does not claim, and parts left in ``.incoming`` by a crash."""
        cutoff = (time.time() if now is None else now) - older_than_seconds
        removed = freed = kept = 0
        if not self.root.is_dir():
            return PruneReport(0, 0, 0)
        for path in self.root.glob("*/*"):
            try:
                st = path.stat()
            except FileNotFoundError:  # pruned by another process meanwhile
                continue
            stale = st.st_mtime < cutoff
            if path.parent == self.incoming:
                stale = st.st_mtime < min(cutoff, time.time() - 3600)
            elif stale and in_use(path):
                stale = False
            if not stale:
                kept += 1
                continue
            path.unlink(missing_ok=True)
            removed += 1
            freed += st.st_size
        return PruneReport(removed, freed, kept)
