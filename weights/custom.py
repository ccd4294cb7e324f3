"""Import a custom fine-tuned ResNet-18 (your own N categories) as a bulktag checkpoint.

People fine-tune torchvision's ``resnet18`` on their own classes (pets, documents,
receipts, screenshots...) and save ``model.state_dict()``, often inside a training
checkpoint (``{"state_dict": ..., "epoch": ...}``). ``import_custom`` reads that file
with ``weights_only=True`` (no code runs), checks that it is exactly a ResNet-18 whose
``fc`` has one output per line of the labels file, and writes the usual bulktag
checkpoint (``meta.trained = true``, ``meta.source = "custom"``) with its own
``.sha256`` pin. Workers then load it like any other checkpoint; its model id is
``resnet18-<sha256[:12]>`` and its records carry its own labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tasks.errors import WeightsError
from weights.checkpoint import sha256_file, write_checkpoint
from weights.spec import MIN_CLASSES

# Keys training scripts commonly nest the model's state_dict under.
_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "weights")


def read_labels(path: Path) -> list[str]:
    """One label per line (UTF-8), trailing blank lines ignored.

    Raises:
        WeightsError: fewer than 2 labels, a blank line between labels, a label given
            twice (names must find one class each in ``bulktag search``), or one holding
            ``|`` or ``,``.
    """
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    seen: dict[str, int] = {}
    labels = []
    for number, line in enumerate(lines, start=1):
        label = line.strip()
        if not label:
            raise WeightsError(f"{path}: line {number} is empty (one label per line)")
        if "|" in label or "," in label:
            # "|" nests keywords in XMP sidecars (lr:hierarchicalSubject); "," separates
            # labels in the dashboard's search box and in keyword lists.
            raise WeightsError(f"{path}: label {label!r} on line {number} holds '|' or ','")
        if label.lower() in seen:
            raise WeightsError(
                f"{path}: label {label!r} on line {number} repeats line {seen[label.lower()]}"
            )
        seen[label.lower()] = number
        labels.append(label)
    if len(labels) < MIN_CLASSES:
        raise WeightsError(f"{path}: {len(labels)} labels; a classifier needs at least 2")
    return labels


def _state_dict_of(payload: Any, path: Path) -> dict[str, Any]:
    """The model's state_dict inside a loaded file: itself or nested in a checkpoint."""
    import torch

    if isinstance(payload, dict):
        if payload and all(isinstance(v, torch.Tensor) for v in payload.values()):
            return _strip_prefix(payload)
        for key in _NESTED_KEYS:
            nested = payload.get(key)
            if isinstance(nested, dict) and nested:
                return _state_dict_of(nested, path)
    raise WeightsError(
        f"{path} holds no ResNet-18 state_dict (save it with torch.save(model.state_dict(), PATH))"
    )


def _strip_prefix(state_dict: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``module.`` prefix DataParallel/DistributedDataParallel add to every key."""
    if all(k.startswith("module.") for k in state_dict):
        return {k.removeprefix("module."): v for k, v in state_dict.items()}
    return state_dict


def load_custom_state_dict(path: Path, labels: list[str]) -> dict[str, Any]:
    """Load ``path`` safely and check it is a ResNet-18 with ``len(labels)`` outputs.

    Returns:
        The state_dict of the verified model (float32, torchvision's key names).

    Raises:
        WeightsError: unreadable, not a state_dict, or not that architecture.
    """
    import pickle

    import torch
    from torchvision.models import resnet18

    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(
            f"{path} is not a plain state_dict: a pickled model cannot be loaded safely "
            "(weights_only); save it with torch.save(model.state_dict(), PATH)"
        ) from None
    except Exception as exc:  # random bytes make the unpickler raise almost anything
        raise WeightsError(f"{path} is not a loadable PyTorch file: {exc!r}") from None
    state_dict = _state_dict_of(payload, path)
    fc = state_dict.get("fc.weight")
    if fc is None or getattr(fc, "ndim", 0) != 2:
        raise WeightsError(f"{path} has no fc.weight: not a torchvision resnet18 state_dict")
    if fc.shape[0] != len(labels):
        raise WeightsError(
            f"{path} has an fc of {fc.shape[0]} outputs but the labels file has "
            f"{len(labels)} labels: give one label per class, in class order"
        )
    model = resnet18(weights=None, num_classes=len(labels))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{path} does not fit resnet18: {str(exc)[:300]}") from None
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def import_custom(model_file: Path, labels_file: Path, dest: Path) -> str:
    """Write ``dest`` (and ``dest.sha256``) from a fine-tuned ResNet-18; return its sha256.

    Raises:
        WeightsError: see ``read_labels`` and ``load_custom_state_dict``.
    """
    labels = read_labels(labels_file)
    state_dict = load_custom_state_dict(model_file, labels)
    meta = {
        "trained": True,
        "source": "custom",
        "source_file": model_file.name,
        "source_sha256": sha256_file(model_file),
        "classes": len(labels),
        "weights": f"custom fine-tuned resnet18, {len(labels)} classes",
    }
    return write_checkpoint(dest, state_dict, labels, meta)
