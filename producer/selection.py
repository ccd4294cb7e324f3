"""Which files a folder walk or bucket listing takes, and a count of those it leaves.

"Never a silent skip": a walk sees videos, sidecars and notes beside the photos. Each
file it does not take is counted by extension, so ``bulktag submit`` can say
``skipped 1,203 files that are not images: .mov 1,190, .xmp 10, .txt 3`` and the job's
status carries the total as ``skipped``. ``--include-ext`` forces a kind in; a file
that is taken but then cannot be decoded is never "skipped": it becomes an ``error``
record with the reason.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from pathlib import Path, PurePosixPath

from tasks.formats import HEAD_BYTES, IMAGE_EXTENSIONS, sniff

NO_EXTENSION = "(no extension)"
# Kinds named in the summary line; the rest are added up as "N other kinds".
SUMMARY_KINDS = 8


def normalise_extensions(values: Iterable[str]) -> frozenset[str]:
    """``["MOV", ".xmp", "raw,cr2"]`` -> ``{".mov", ".xmp", ".raw", ".cr2"}``."""
    out: set[str] = set()
    for value in values:
        for part in value.split(","):
            part = part.strip().lower()
            if part:
                out.add(part if part.startswith(".") else f".{part}")
    return frozenset(out)


def looks_like_image(path: Path, include_ext: frozenset[str] = frozenset()) -> bool:
    """True for an image extension (any case) or an included one; else by content.

    The content check reads the first bytes, so an image saved without its extension
    (or with a wrong one) is still found: JPEG, PNG, GIF, BMP, WebP, TIFF, HEIF, AVIF
    and the RAW formats with their own magic numbers.
    """
    suffix = path.suffix.lower()
    if suffix in IMAGE_EXTENSIONS or suffix in include_ext:
        return True
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEAD_BYTES)
    except OSError:
        return False
    return sniff(head) is not None


class Selection:
    """The rule a walk applies (image kinds plus ``include_ext``) and what it left out.

    Not thread-safe: one walk (one submission) at a time.
    """

    def __init__(self, include_ext: Iterable[str] = ()) -> None:
        self.include_ext = normalise_extensions(include_ext)
        self.skipped: Counter[str] = Counter()

    def takes_file(self, path: Path) -> bool:
        """Whether a walk takes ``path``; counts it as skipped when not."""
        if looks_like_image(path, self.include_ext):
            return True
        self.skip(path.name)
        return False

    def takes_key(self, key: str) -> bool:
        """Whether an S3 listing takes ``key`` (by extension: no cheap content check)."""
        suffix = PurePosixPath(key).suffix.lower()
        if suffix in IMAGE_EXTENSIONS or suffix in self.include_ext:
            return True
        self.skip(key)
        return False

    def skip(self, name: str) -> None:
        self.skipped[PurePosixPath(name).suffix.lower() or NO_EXTENSION] += 1

    @property
    def total(self) -> int:
        return sum(self.skipped.values())

    def summary(self) -> str | None:
        """``skipped 1,203 files that are not images: .mov 1,190, .xmp 10, .txt 3``.

        None when nothing was skipped. The most frequent kinds come first.
        """
        total = self.total
        if not total:
            return None
        ranked = sorted(self.skipped.items(), key=lambda kv: (-kv[1], kv[0]))
        parts = [f"{ext} {count:,}" for ext, count in ranked[:SUMMARY_KINDS]]
        rest = ranked[SUMMARY_KINDS:]
        if rest:
            parts.append(f"{len(rest)} other kinds {sum(c for _, c in rest):,}")
        noun = "file that is not an image" if total == 1 else "files that are not images"
        return f"skipped {total:,} {noun}: {', '.join(parts)}"
