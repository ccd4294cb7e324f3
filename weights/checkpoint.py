"""Write, verify and load bulktag checkpoints.

A checkpoint is a ``torch.save``d dict ``{"format", "arch", "state_dict",
"categories", "meta"}`` that loads with ``weights_only=True``. Next to it sits
``<file>.sha256`` (``sha256sum`` format). Loading always re-hashes the file and
compares it with the pin, so a tampered or swapped file is refused before torch
parses a byte of it.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tasks.errors import WeightsError
from weights.spec import ARCH, CHECKPOINT_FORMAT, MIN_CLASSES


@dataclass(frozen=True)
class Checkpoint:
    """A verified checkpoint, ready to build a model from."""

    path: Path
    sha256: str
    state_dict: dict[str, Any]
    categories: list[str]
    meta: dict[str, Any]

    @property
    def model_id(self) -> str:
        """Short, stable id that goes into every result: arch plus hash prefix."""
        return model_id_for(self.sha256)

    @property
    def trained(self) -> bool:
        return bool(self.meta.get("trained", False))


def model_id_for(sha256: str) -> str:
    return f"{ARCH}-{sha256[:12]}"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sidecar_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def read_pin(path: Path) -> str | None:
    """The sha256 recorded beside ``path``, or None when there is no sidecar."""
    side = sidecar_path(path)
    if not side.exists():
        return None
    text = side.read_text().split()
    return text[0].lower() if text else None


def write_checkpoint(
    path: Path, state_dict: dict[str, Any], categories: list[str], meta: dict[str, Any]
) -> str:
    """Atomically write a checkpoint and its sha256 sidecar; return the digest.

    Raises:
        WeightsError: fewer than 2 categories, or not one per output of ``fc``.
    """
    check_categories(state_dict, categories)
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": CHECKPOINT_FORMAT,
        "arch": ARCH,
        "state_dict": state_dict,
        "categories": list(categories),
        "meta": dict(meta),
    }
    # Serialise to memory: torch.save names the archive after the file, so writing to
    # a temp name directly would make identical weights hash differently.
    buffer = io.BytesIO()
    torch.save(payload, buffer)
    data = buffer.getvalue()
    digest = hashlib.sha256(data).hexdigest()
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    sidecar_path(path).write_text(f"{digest}  {path.name}\n")
    return digest


def verify_file(path: Path, expected_sha256: str | None = None) -> str:
    """Check ``path`` against its pin and return its sha256.

    Args:
        path: the checkpoint file.
        expected_sha256: an explicit pin (``BULKTAG_WEIGHTS_SHA256``); when None the
            ``.sha256`` sidecar written with the checkpoint is the pin.

    Raises:
        WeightsError: the file is missing, unpinned, or its digest differs.
    """
    if not path.is_file():
        raise WeightsError(
            f"model checkpoint not found: {path} (set BULKTAG_WEIGHTS, or create one with "
            "`bulktag weights fetch` or, offline, `bulktag weights dev-untrained -o PATH`)"
        )
    pin = (expected_sha256 or read_pin(path) or "").lower()
    if not pin:
        raise WeightsError(
            f"checkpoint {path} has no pinned sha256: expected {sidecar_path(path)} "
            "or BULKTAG_WEIGHTS_SHA256"
        )
    actual = sha256_file(path)
    if actual != pin:
        raise WeightsError(
            f"checkpoint {path} sha256 {actual[:16]}... does not match its pin {pin[:16]}...: "
            "the file was modified or replaced; refusing to load it"
        )
    return actual


def load_checkpoint(path: Path, expected_sha256: str | None = None) -> Checkpoint:
    """Verify, then load a checkpoint with ``weights_only=True``.

    Raises:
        WeightsError: not pinned, tampered, or not a bulktag ResNet-18 checkpoint.
    """
    import pickle

    import torch

    digest = verify_file(path, expected_sha256)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        # Bytes that are no checkpoint make the weights-only unpickler raise almost
        # anything: UnpicklingError mostly, but IndexError, KeyError or
        # UnicodeDecodeError for ~9% of random 2 KB files.
        what = _first_line(exc) if isinstance(exc, pickle.UnpicklingError) else repr(exc)
        raise WeightsError(f"{path} is not a loadable checkpoint: {what}") from exc
    if not isinstance(payload, dict) or "state_dict" not in payload:
        raise WeightsError(
            f"{path} is not a bulktag checkpoint (no state_dict); convert official weights "
            "with `bulktag weights import FILE.pth`"
        )
    if payload.get("arch") != ARCH:
        raise WeightsError(f"{path} holds arch {payload.get('arch')!r}, bulktag runs {ARCH!r}")
    categories = payload.get("categories")
    if not isinstance(categories, list) or not isinstance(payload["state_dict"], dict):
        raise WeightsError(f"{path} does not carry category names and a state_dict")
    try:
        check_categories(payload["state_dict"], categories)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    return Checkpoint(
        path=path,
        sha256=digest,
        state_dict=payload["state_dict"],
        categories=[str(c) for c in categories],
        meta=dict(payload.get("meta") or {}),
    )


def check_categories(state_dict: dict[str, Any], categories: list[Any]) -> None:
    """One category name per output of the classifier: ImageNet's 1000 for the official
    layout, any N >= 2 for a custom fine-tuned ResNet-18 (``weights.custom``).

    Raises:
        WeightsError: fewer than 2 names, names that are not text, or a count that
            differs from ``fc``'s outputs.
    """
    if len(categories) < MIN_CLASSES or not all(isinstance(c, str) for c in categories):
        raise WeightsError(f"expected at least {MIN_CLASSES} category names (text)")
    fc = state_dict.get("fc.weight")
    outputs = int(fc.shape[0]) if fc is not None and hasattr(fc, "shape") else None
    if outputs != len(categories):
        raise WeightsError(
            f"{len(categories)} category names for a classifier (fc) of {outputs} outputs"
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
