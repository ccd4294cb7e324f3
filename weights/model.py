"""Build an eval-mode ResNet-18 from a verified checkpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING

from tasks.errors import WeightsError

if TYPE_CHECKING:
    import torch

    from weights.checkpoint import Checkpoint


def build_model(ckpt: Checkpoint) -> torch.nn.Module:
    """Instantiate torchvision's resnet18 with one output per category; load strictly.

    Raises:
        WeightsError: the state dict does not fit a ResNet-18 of that many classes.
    """
    from torchvision.models import resnet18

    model = resnet18(weights=None, num_classes=len(ckpt.categories))
    try:
        model.load_state_dict(ckpt.state_dict, strict=True)
    except RuntimeError as exc:
        raise WeightsError(f"{ckpt.path} does not fit resnet18: {str(exc)[:200]}") from exc
    evaluating: torch.nn.Module = model.eval()
    return evaluating
