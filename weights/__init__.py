"""Model weights: the pinned official spec, checkpoint I/O and model construction."""

from weights.checkpoint import Checkpoint, load_checkpoint, model_id_for, verify_file
from weights.spec import IMAGENET1K_V1, WeightsSpec

__all__ = [
    "IMAGENET1K_V1",
    "Checkpoint",
    "WeightsSpec",
    "load_checkpoint",
    "model_id_for",
    "verify_file",
]
