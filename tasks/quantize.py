"""Static int8 ResNet-18 for CPU workers (``--precision int8``), from a calibration file.

Why int8: on this project's CPU (AVX512-VNNI) one int8 forward costs ~9 CPU ms per
image against ~19 for bf16 autocast and ~35 for fp32 (one thread, batch 8), and the
forward is ~70% of a fast-mode worker's CPU (docs/BENCHMARKS.md).

Why static and calibrated offline: activation ranges are measured once, on photos, by
``bulktag weights calibrate``, and saved. Every worker that loads the same file builds
the same int8 arithmetic, so their records can share one model id (which names the
file) and one dedupe cache; calibrating on each worker's first images would not.

The file holds only the observers' tensors of torch.ao's FX graph-mode quantization
with the x86 backend's default qconfig (per-channel symmetric int8 weights,
histogram-calibrated activations). It is read with ``weights_only=True`` and bound to
one checkpoint by that checkpoint's sha256. Agreement with fp32 is not exact: ``make
bench`` measures it on its corpus and prints it next to the speed.
"""

from __future__ import annotations

import contextlib
import pickle
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from tasks.errors import ConfigError, WeightsError
from weights.checkpoint import Checkpoint, sha256_file
from weights.model import build_model

ENGINE: Final = "x86"  # torch's quantized CPU backend (oneDNN/FBGEMM on x86-64)
FORMAT: Final = "bulktag-int8-calibration/1"
_OBSERVER = "activation_post_process"  # how FX names the inserted observers


@dataclass(frozen=True)
class Calibration:
    """Observer tensors for one checkpoint, and the file they came from."""

    path: Path
    sha256: str
    weights_sha256: str
    observers: dict[str, torch.Tensor]
    meta: dict[str, Any]

    @property
    def short_id(self) -> str:
        """The part of the model id that names this calibration."""
        return self.sha256[:8]


def calibration_path(weights: Path) -> Path:
    """Where ``bulktag weights calibrate`` writes, and workers look, by default."""
    return weights.with_name(weights.name + ".int8")


def _prepared(ckpt: Checkpoint) -> torch.fx.GraphModule:
    """The float model with observers inserted (conv+bn+relu fused first)."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    torch.backends.quantized.engine = ENGINE
    example = (torch.zeros(1, 3, 224, 224),)
    with _quiet_torch_ao():
        return prepare_fx(build_model(ckpt), get_default_qconfig_mapping(ENGINE), example)


@contextlib.contextmanager
def _quiet_torch_ao() -> Iterator[None]:
    """Silence torch.ao's warnings about itself, which every call would repeat.

    FX graph-mode quantization is deprecated upstream in favour of torchao's pt2e flow,
    whose fast x86 path runs through ``torch.compile`` (~25 s at every worker start
    here). torch is pinned (2.14.1), where the FX path works; revisit on an upgrade.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.ao.quantization is deprecated")
        warnings.filterwarnings("ignore", message="Please use quant_min", category=UserWarning)
        warnings.filterwarnings("ignore", message=".*quantized tensor creation functions")
        yield


def calibrate(ckpt: Checkpoint, batches: Iterable[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Run normalised N x 3 x 224 x 224 batches through the observers; return their state.

    Raises:
        ConfigError: no images were given.
    """
    model = _prepared(ckpt)
    seen = 0
    with torch.inference_mode():
        for batch in batches:
            model(batch)
            seen += batch.shape[0]
    if not seen:
        raise ConfigError("calibration needs at least one image")
    return {k: v.clone() for k, v in model.state_dict().items() if _OBSERVER in k}


def calibrate_images(
    ckpt: Checkpoint, images: Iterable[bytes], *, max_pixels: int, batch_size: int = 16
) -> tuple[dict[str, torch.Tensor], int, int]:
    """Calibrate on encoded photos, preprocessed exactly as the reference does.

    Returns:
        ``(observers, used, skipped)``: files that do not decode are skipped and counted.
    """
    from tasks.errors import UriError
    from tasks.preprocess import decode_crop, normalize

    counts = {"used": 0, "skipped": 0}

    def batches() -> Iterable[torch.Tensor]:
        crops: list[torch.Tensor] = []
        for data in images:
            try:
                crops.append(decode_crop(data, max_pixels, "exact"))
            except UriError:
                counts["skipped"] += 1
                continue
            counts["used"] += 1
            if len(crops) == batch_size:
                yield normalize(crops)
                crops = []
        if crops:
            yield normalize(crops)

    observers = calibrate(ckpt, batches())
    return observers, counts["used"], counts["skipped"]


def write_calibration(
    path: Path, ckpt: Checkpoint, observers: dict[str, torch.Tensor], **meta: Any
) -> Calibration:
    """Save ``observers`` for ``ckpt`` (atomically) and return them as loaded."""
    payload = {
        "format": FORMAT,
        "weights_sha256": ckpt.sha256,
        "engine": ENGINE,
        "torch": str(torch.__version__),
        "meta": meta,
        "observers": observers,
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    tmp.replace(path)
    return load_calibration(path, ckpt)


def load_calibration(path: Path, ckpt: Checkpoint) -> Calibration:
    """Read a calibration file made for ``ckpt``.

    Raises:
        ConfigError: there is no file (it says how to make one).
        WeightsError: not a calibration file, or made for another checkpoint.
    """
    if not path.is_file():
        raise ConfigError(
            f"precision int8 needs a calibration file and {path} does not exist; "
            f"create it with `bulktag weights calibrate -o {ckpt.path}` "
            "(or set BULKTAG_INT8_CALIBRATION)"
        )
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, ValueError) as exc:
        raise WeightsError(f"{path} is not a loadable calibration file: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise WeightsError(f"{path} is not a bulktag int8 calibration file ({FORMAT})")
    if payload.get("weights_sha256") != ckpt.sha256:
        raise WeightsError(
            f"{path} was calibrated for checkpoint sha256 "
            f"{str(payload.get('weights_sha256'))[:12]}..., not {ckpt.path} "
            f"({ckpt.sha256[:12]}...); run `bulktag weights calibrate` again"
        )
    observers = payload.get("observers")
    if not isinstance(observers, dict) or not observers:
        raise WeightsError(f"{path} holds no observer tensors")
    return Calibration(
        path=path,
        sha256=sha256_file(path),
        weights_sha256=ckpt.sha256,
        observers=observers,
        meta=dict(payload.get("meta") or {}),
    )


def quantized_model(ckpt: Checkpoint, calibration: Calibration) -> torch.nn.Module:
    """The int8 model: observers restored from ``calibration``, then converted.

    Raises:
        WeightsError: the file's observers do not match this model's (another torch
            version or architecture made it).
    """
    from torch.ao.quantization.quantize_fx import convert_fx

    if calibration.weights_sha256 != ckpt.sha256:
        raise WeightsError(f"{calibration.path} belongs to another checkpoint")
    model = _prepared(ckpt)
    expected = {k for k in model.state_dict() if _OBSERVER in k}
    if expected != set(calibration.observers):
        raise WeightsError(
            f"{calibration.path} does not fit this model's observers "
            f"({len(expected)} expected, {len(calibration.observers)} found); "
            "run `bulktag weights calibrate` again"
        )
    model.load_state_dict(calibration.observers, strict=False)
    with _quiet_torch_ao():
        return convert_fx(model)
