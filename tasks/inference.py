"""The model wrapper: one eval-mode ResNet-18 per worker process, batched top-3.

It counts forward passes and images so tests (and operators) can prove dedupe and
"loaded once" with numbers the worker exposes, not with timings.

Speed options, and why each is safe:
- BatchNorm folded into the convolutions (``torch.fx`` fuse): ~8% faster on CPU and
  changes logits by ~1e-6, inside the reference tolerance; done at load (~0.2 s).
- channels_last: oneDNN's fast convolution layout; the input batches from
  ``tasks.preprocess.normalize`` are already in it, so no copy.
- precision ``bf16`` (AVX512-BF16/AMX) roughly doubles the forward's speed but is *not*
  reference-exact. The model's weights are cast once at load rather than by autocast at
  every call: with BatchNorm folded, autocast runs every layer of ResNet-18 in bf16
  anyway, so the logits are bit-identical and the per-call weight casts (~5%) are saved.
  It: its agreement is measured by ``make bench``. ``fp16`` is
  for CUDA only, where the model itself is cast to half. ``int8`` (CPU only) runs a
  statically quantized model built from a calibration file (``tasks.quantize``), about
  twice as fast as bf16 and the least faithful: ``make bench`` prints its agreement.
- ``torch.compile`` is not used: it compiles for ~30 s, far past the 5 s start budget,
  for a forward that is not the bottleneck (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Final

import torch

from tasks.errors import ConfigError
from tasks.quantize import Calibration, quantized_model
from tasks.settings import PRECISIONS, check_precision  # noqa: F401  # re-exported
from weights.checkpoint import Checkpoint
from weights.model import build_model

log = logging.getLogger(__name__)

# Precisions whose model and input are cast to a float type (int8 quantizes its input).
_CAST: Final = {"bf16": torch.bfloat16, "fp16": torch.float16}


def variant_id(model_id: str, *, decode: str = "exact", precision: str = "fp32") -> str:
    """``model_id`` plus ``+fast`` / ``+bf16`` / ``+fp16`` / ``+int8-<calibration>``.

    >>> variant_id("resnet18-0123456789ab", decode="fast", precision="bf16")
    'resnet18-0123456789ab+fast+bf16'
    """
    suffix = "".join(f"+{v}" for v in (decode, precision) if v not in ("exact", "fp32"))
    return model_id + suffix


def _fuse_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold eval BatchNorm into the preceding convolutions (falls back to the model)."""
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(model)
    except Exception as exc:  # an architecture fx cannot trace: run it unfused
        log.warning("BatchNorm folding skipped: %s", exc)
        return model


@dataclass
class Tagger:
    """A loaded model plus its identity, execution options and counters."""

    model: torch.nn.Module
    categories: list[str]
    model_id: str
    trained: bool
    channels_last: bool = True
    precision: str = "fp32"
    device: str = "cpu"
    decode: str = "exact"
    forward_batches: int = 0
    forward_images: int = 0
    load_seconds: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)
    _counting: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_checkpoint(
        cls,
        ckpt: Checkpoint,
        channels_last: bool = True,
        *,
        precision: str = "fp32",
        device: str = "cpu",
        decode: str = "exact",
        calibration: Calibration | None = None,
    ) -> Tagger:
        """Build the model for ``device`` and ``precision``.

        ``decode`` is the preprocessing the lanes feed it with (``tasks.preprocess``). A
        non-reference ``precision`` or ``decode`` is part of the model id (see
        ``variant_id``), so such results are never served from, or into, the dedupe
        cache of the reference pipeline, and every record says how it was made.

        ``calibration`` is required for ``int8`` and names itself in the model id.

        Raises:
            ConfigError: see ``check_precision``; int8 without a calibration.
            WeightsError: a calibration that does not fit the checkpoint.
        """
        check_precision(precision, device)
        start = time.perf_counter()
        label = precision
        if precision == "int8":
            if calibration is None:
                raise ConfigError("precision int8 needs a calibration (tasks.quantize)")
            model = quantized_model(ckpt, calibration)
            label = f"int8-{calibration.short_id}"
        else:
            model = _fuse_batchnorm(build_model(ckpt)).to(device)
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        if precision in _CAST:
            model = model.to(_CAST[precision])
        if device == "cuda" and precision == "fp32":
            torch.backends.cudnn.allow_tf32 = False  # TF32 would not be fp32 arithmetic
        return cls(
            model=model,
            categories=ckpt.categories,
            model_id=variant_id(ckpt.model_id, decode=decode, precision=label),
            trained=ckpt.trained,
            channels_last=channels_last,
            precision=precision,
            device=device,
            decode=decode,
            load_seconds=time.perf_counter() - start,
            meta=ckpt.meta,
        )

    def top3(self, images: list[torch.Tensor]) -> list[list[dict[str, Any]]]:
        """One batched forward over ``images`` (3x224x224 float each); top-3 per image."""
        if not images:
            return []
        batch = torch.stack(images)
        if self.channels_last:
            batch = batch.contiguous(memory_format=torch.channels_last)
        return self.top3_batch(batch)

    def top3_batch(self, batch: torch.Tensor) -> list[list[dict[str, Any]]]:
        """Top-3 labels (fewer for a 2-class model) for a normalised N x 3 x 224 x 224 batch.

        Safe to call from several threads at once (inference mode, no module state):
        the worker's lanes each run their own forward.
        """
        if batch.shape[0] == 0:
            return []
        batch = batch.to(self.device, _CAST.get(self.precision), non_blocking=True)
        with torch.inference_mode():
            logits = self.model(batch).float()  # softmax in fp32 whatever the precision
            # top-min(3, N): a custom model may have only 2 classes
            scores, indices = torch.softmax(logits, dim=1).topk(min(3, logits.shape[1]), dim=1)
        with self._counting:  # lanes forward concurrently
            self.forward_batches += 1
            self.forward_images += batch.shape[0]
        return [
            [
                {"label": self.categories[i], "index": i, "score": s}
                for i, s in zip(idx_row, score_row, strict=True)
            ]
            for idx_row, score_row in zip(indices.tolist(), scores.tolist(), strict=True)
        ]

    def warm_up(self, batch_size: int = 1) -> None:
        """Forwards at batch 1 (and ``batch_size``) before taking work.

        The first forward of a process touches its memory and code pages for the first
        time; later shapes add only oneDNN's per-shape set-up (measured 2-70 ms), so the
        worker warms at batch 1 alone.
        """
        for n in sorted({1, max(1, batch_size)}):
            x = torch.zeros(n, 3, 224, 224, device=self.device, dtype=_CAST.get(self.precision))
            if self.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                self.model(x)


_current: Tagger | None = None


def install(tagger: Tagger) -> None:
    global _current
    _current = tagger


def current() -> Tagger | None:
    """The process's tagger, set by the worker bootstrap (None before it ran)."""
    return _current
