"""The model wrapper: one eval-mode ResNet-18 per worker process, batched top-3.

It counts forward passes and images so tests (and operators) can prove dedupe and
"loaded once" with numbers the worker exposes, not with timings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from weights.checkpoint import Checkpoint
from weights.model import build_model

log = logging.getLogger(__name__)


@dataclass
class Tagger:
    """A loaded model plus its identity and counters."""

    model: torch.nn.Module
    categories: list[str]
    model_id: str
    trained: bool
    channels_last: bool = True
    forward_batches: int = 0
    forward_images: int = 0
    load_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_checkpoint(cls, ckpt: Checkpoint, channels_last: bool = True) -> Tagger:
        start = time.perf_counter()
        model = build_model(ckpt)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        return cls(
            model=model,
            categories=ckpt.categories,
            model_id=ckpt.model_id,
            trained=ckpt.trained,
            channels_last=channels_last,
            load_seconds=time.perf_counter() - start,
            meta=ckpt.meta,
        )

    def top3(self, images: list[torch.Tensor]) -> list[list[dict[str, Any]]]:
        """One batched forward over ``images`` (3x224x224 each); top-3 per image."""
        if not images:
            return []
        batch = torch.stack(images)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            probs = torch.softmax(self.model(batch), dim=1)
            scores, indices = probs.topk(3, dim=1)
        self.forward_batches += 1
        self.forward_images += len(images)
        return [
            [
                {"label": self.categories[i], "index": i, "score": s}
                for i, s in zip(idx_row, score_row, strict=True)
            ]
            for idx_row, score_row in zip(indices.tolist(), scores.tolist(), strict=True)
        ]

    def warm_up(self) -> None:
        """One forward before taking work, so the first chunk does not pay for it."""
        with torch.inference_mode():
            x = torch.zeros(1, 3, 224, 224)
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            self.model(x)


_current: Tagger | None = None


def install(tagger: Tagger) -> None:
    global _current
    _current = tagger


def current() -> Tagger | None:
    """The process's tagger, set by the worker bootstrap (None before it ran)."""
    return _current
