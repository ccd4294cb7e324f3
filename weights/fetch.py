"""Produce checkpoints: the official IMAGENET1K_V1 weights, or untrained dev weights.

The official file is downloaded (or imported from a copy made elsewhere), checked
against the pinned sha256 and rewritten in bulktag's checkpoint format. Untrained
weights are a seeded random initialisation for tests and offline demos: their meta
says ``trained: false`` and everything that uses them says so loudly.
"""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from tasks.errors import WeightsError
from weights.checkpoint import write_checkpoint
from weights.spec import IMAGENET1K_V1, WeightsSpec

UNTRAINED_WARNING = "UNTRAINED random weights: labels and scores are meaningless"


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, from torchvision's own (offline) weights metadata."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


def fetch_official(dest: Path, spec: WeightsSpec = IMAGENET1K_V1, timeout: float = 60) -> str:
    """Download ``spec``, verify its pinned sha256 and write a checkpoint at ``dest``.

    Raises:
        WeightsError: offline, download failed, or the digest does not match; the
            message says how to finish the job by hand.
    """
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / spec.file_name
        try:
            with urllib.request.urlopen(spec.url, timeout=timeout) as resp, open(raw, "wb") as fh:
                shutil.copyfileobj(resp, fh)
        except (urllib.error.URLError, OSError) as exc:
            raise WeightsError(
                f"cannot download {spec.url}: {getattr(exc, 'reason', exc)}. "
                f"This machine looks offline. On a machine with internet run "
                f"`curl -LO {spec.url}` (sha256 {spec.sha256}), copy {spec.file_name} here "
                f"and run `bulktag weights import {spec.file_name} -o {dest}`; "
                f"for an offline demo use `bulktag weights dev-untrained -o {dest}`"
            ) from exc
        return import_official(raw, dest, spec)


def import_official(raw: Path, dest: Path, spec: WeightsSpec = IMAGENET1K_V1) -> str:
    """Convert a downloaded torchvision ``.pth`` into a bulktag checkpoint after pinning it."""
    import torch

    digest = hashlib.sha256(raw.read_bytes()).hexdigest()
    if digest != spec.sha256:
        raise WeightsError(
            f"{raw} has sha256 {digest}, but {spec.name} is pinned to {spec.sha256}: "
            "refusing a file that is not the official release"
        )
    state_dict = torch.load(raw, map_location="cpu", weights_only=True)
    meta = {
        "trained": True,
        "source": spec.url,
        "source_sha256": spec.sha256,
        "weights": f"torchvision ResNet18_Weights.{spec.name}",
    }
    return write_checkpoint(dest, state_dict, imagenet_categories(), meta)


def write_untrained(dest: Path, seed: int = 0) -> str:
    """Write a deterministic random-initialised ResNet-18 checkpoint (for tests/offline)."""
    import torch
    from torchvision.models import resnet18

    torch.manual_seed(seed)
    model = resnet18(weights=None)
    meta = {
        "trained": False,
        "source": f"torchvision resnet18(weights=None), torch.manual_seed({seed})",
        "seed": seed,
        "warning": UNTRAINED_WARNING,
    }
    return write_checkpoint(dest, model.state_dict(), imagenet_categories(), meta)
