"""The plain torchvision reference pipeline, written without any bulktag code.

PIL open -> EXIF transpose -> RGB -> IMAGENET1K_V1.transforms() -> resnet18 eager,
batch of 1, fp32, softmax, top-3. bulktag's results must agree with it.
"""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image, ImageOps
from torchvision.models import ResNet18_Weights, resnet18


def load_reference_model(checkpoint: Path) -> torch.nn.Module:
    payload = torch.load(checkpoint, map_location="cpu", weights_only=True)
    model = resnet18(weights=None)
    model.load_state_dict(payload["state_dict"])
    return model.eval()


def reference_top3(model: torch.nn.Module, image: Path) -> tuple[list[int], list[float]]:
    transform = ResNet18_Weights.IMAGENET1K_V1.transforms()
    with Image.open(image) as img:
        rgb = ImageOps.exif_transpose(img).convert("RGB")
    with torch.inference_mode():
        probs = torch.softmax(model(transform(rgb).unsqueeze(0)), dim=1)
        scores, indices = probs.topk(3, dim=1)
    return indices[0].tolist(), scores[0].tolist()
