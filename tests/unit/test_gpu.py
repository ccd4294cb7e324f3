"""``--device cuda``: fp16 channels_last forward on the GPU, decode on the CPU lanes.

Skipped where torch sees no CUDA device (CI and the 2-core dev machines); run on a GPU
box with ``pytest -m gpu``.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import torch

from producer.samples import build_corpus
from tasks.inference import Tagger
from tasks.lanes import tag_contents
from tasks.preprocess import decode_crop, normalize
from weights.checkpoint import load_checkpoint

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
]


def test_fp16_on_cuda_agrees_with_fp32_on_cpu(dev_weights: Path, tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path, 12, sizes=[(640, 480), (1920, 1080)], repeat_fraction=0)
    datas = [p.read_bytes() for p in corpus.unique]
    ckpt = load_checkpoint(dev_weights)
    cpu = Tagger.from_checkpoint(ckpt)
    gpu = Tagger.from_checkpoint(ckpt, device="cuda", precision="fp16")
    assert gpu.model_id == cpu.model_id + "+fp16"
    crops = [decode_crop(d, 64_000_000) for d in datas]
    want = cpu.top3_batch(normalize(crops))
    got = gpu.top3_batch(normalize(crops, "cuda"))
    top1 = sum(w[0]["index"] == g[0]["index"] for w, g in zip(want, got, strict=True))
    assert top1 / len(datas) >= 0.75
    with ThreadPoolExecutor(2) as pool:
        fresh, failures = tag_contents(
            [(str(i), d) for i, d in enumerate(datas)],
            tagger=gpu,
            pool=pool,
            lanes=2,
            batch_size=64,
            max_pixels=64_000_000,
        )
    assert not failures and len(fresh) == len(datas)
