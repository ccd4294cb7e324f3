"""Write XMP sidecars for a job's records: ``photo.jpg.xmp`` beside ``photo.jpg``.

The naming is digiKam's and darktable's (the image's full name plus ``.xmp``), so those
tools pick the keywords up on their next metadata read. The image itself is never
opened or modified. Where a sidecar cannot sit beside its image (an S3 or HTTP source,
or a folder we may not write to) it goes under ``--out DIR``, mirroring the URI:
``/photos/a.jpg`` -> ``DIR/photos/a.jpg.xmp``, ``s3://bucket/k/a.jpg`` ->
``DIR/bucket/k/a.jpg.xmp``, ``https://host/p/a.jpg`` -> ``DIR/host/p/a.jpg.xmp``.

Each write is atomic (a temporary file renamed over the old sidecar) and skipped when
the merged bytes equal what is already there, so a second run touches nothing.
"""

from __future__ import annotations

import errno
import os
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote, urlsplit

from producer.xmp import Tags, XmpError, merge_tags

SIDECAR_SUFFIX = ".xmp"
# Errors that mean "this folder is not ours to write": fall back to --out DIR.
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


@dataclass
class SidecarReport:
    """What one ``bulktag sidecars`` run did (or, dry, would do)."""

    written: int = 0
    unchanged: int = 0
    below_min_score: int = 0  # ok records with no label at or above --min-score
    not_ok: int = 0  # error or pending records: nothing to say about them
    need_out: list[str] = field(default_factory=list)  # URIs with nowhere to write
    failed: list[str] = field(default_factory=list)  # "uri: reason" (e.g. a broken sidecar)

    def summary(self) -> str:
        parts = [f"{self.written} written", f"{self.unchanged} unchanged"]
        if self.below_min_score:
            parts.append(f"{self.below_min_score} with no label at the minimum score")
        if self.not_ok:
            parts.append(f"{self.not_ok} records not ok")
        if self.need_out:
            parts.append(f"{len(self.need_out)} need --out DIR")
        if self.failed:
            parts.append(f"{len(self.failed)} failed")
        return "sidecars: " + ", ".join(parts)


def local_path(uri: str) -> Path | None:
    """The file a URI names on this machine, or None for S3/HTTP sources."""
    if uri.startswith("file://"):
        return Path(unquote(urlsplit(uri).path))
    if "://" in uri:
        return None
    return Path(uri)


def _safe_parts(parts: Iterable[str]) -> list[str]:
    """Path components without ``..``/``.``/empty ones, so a URI cannot climb out of DIR."""
    return [p for p in parts if p not in ("", ".", "..")]


def mirrored_path(uri: str, out: Path) -> Path:
    """Where the sidecar of ``uri`` goes under ``out`` (see the module docstring).

    Raises:
        ValueError: the URI names no file (nothing left of its path).
    """
    local = local_path(uri)
    if local is not None:
        parts = _safe_parts(p for p in PurePosixPath(local.as_posix()).parts if p != "/")
    else:
        split = urlsplit(uri)
        parts = _safe_parts([split.netloc, *unquote(split.path).split("/")])
    if len(parts) < 1 or (local is None and len(parts) < 2):
        raise ValueError(f"no file name in {uri!r}")
    parts[-1] += SIDECAR_SUFFIX
    return out.joinpath(*parts)


def beside_path(uri: str) -> Path | None:
    """``photo.jpg.xmp`` next to a local ``photo.jpg``; None for remote sources."""
    local = local_path(uri)
    return local.with_name(local.name + SIDECAR_SUFFIX) if local is not None else None


def tags_for(record: dict[str, Any], min_score: float) -> Tags | None:
    """The tags an ok record contributes at ``min_score`` (None: no label reaches it)."""
    top = record.get("top3") or []
    keywords = [t["label"] for t in top if t["score"] >= min_score]
    if not keywords:
        return None
    return Tags(keywords, record["model"], [(t["label"], float(t["score"])) for t in top])


def _write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` in one rename (readers never see half a sidecar)."""
    mode = path.stat().st_mode & 0o777 if path.exists() else None
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _merge_into(path: Path, tags: Tags, dry_run: bool) -> bool:
    """Merge ``tags`` into the sidecar at ``path``; True when its bytes (would) change.

    Raises:
        OSError: the folder cannot be written (the caller may fall back to ``--out``).
        XmpError: an existing sidecar is not mergeable XMP.
    """
    existing = path.read_bytes() if path.exists() else None
    merged = merge_tags(existing, tags)
    if merged == existing:
        return False
    folder = next((p for p in (path.parent, *path.parents) if p.exists()), path.parent)
    if not os.access(folder, os.W_OK):  # root passes this check: the write itself decides
        raise PermissionError(errno.EACCES, "folder is not writable", str(folder))
    if not dry_run:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, merged)
    return True


def write_sidecars(
    records: Iterable[dict[str, Any]],
    *,
    min_score: float = 0.0,
    out: Path | None = None,
    dry_run: bool = False,
    on_write: Callable[[Path, Tags], None] | None = None,
) -> SidecarReport:
    """Write (or, with ``dry_run``, plan) one sidecar per ok record, streamed.

    Args:
        records: result dicts (schema v1) of one job, e.g. ``Job.results()``.
        min_score: labels below this score are not written as keywords.
        out: folder for sidecars that cannot sit beside their image (None: skip those).
        dry_run: decide and report, write nothing.
        on_write: called with each sidecar path that changes (or would) and its tags.

    Returns:
        Counts of what happened; URIs that needed ``out`` or failed are listed.
    """
    report = SidecarReport()
    for record in records:
        if record.get("status") != "ok":
            report.not_ok += 1
            continue
        tags = tags_for(record, min_score)
        if tags is None:
            report.below_min_score += 1
            continue
        uri = record["uri"]
        try:
            changed = _place(uri, tags, out, dry_run)
        except (XmpError, OSError, ValueError) as exc:
            report.failed.append(f"{uri}: {exc}")
            continue
        if changed is None:
            report.need_out.append(uri)
        elif changed[1]:
            report.written += 1
            if on_write is not None:
                on_write(changed[0], tags)
        else:
            report.unchanged += 1
    return report


def _place(uri: str, tags: Tags, out: Path | None, dry_run: bool) -> tuple[Path, bool] | None:
    """Merge beside the image if possible, else under ``out``; None: nowhere to write."""
    beside = beside_path(uri)
    if beside is not None:
        try:
            return beside, _merge_into(beside, tags, dry_run)
        except OSError as exc:
            if exc.errno not in _NOT_WRITABLE:
                raise
    if out is None:
        return None
    target = mirrored_path(uri, out)
    return target, _merge_into(target, tags, dry_run)
