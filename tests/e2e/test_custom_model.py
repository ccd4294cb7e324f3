"""A custom fine-tuned 5-class ResNet-18, end to end: import, a real worker, search,
labels, models and sidecars, compared with the plain torchvision pipeline."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import redis
import torch
from torchvision.models import resnet18

from producer.samples import build_corpus
from tests.reference import reference_top3
from tests.servers import BULKTAG, REPO, running_worker

pytestmark = pytest.mark.e2e

LABELS = ["cat", "dog", "receipt", "screenshot", "document"]


def bulktag(env: dict[str, str], *args: str, timeout: float = 180) -> str:
    proc = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_custom_five_class_model_tags_a_folder_like_torchvision(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path
) -> None:
    # Given a seeded 5-class fine-tune saved as a training script would, and its labels
    torch.manual_seed(11)
    finetuned = resnet18(num_classes=5).eval()
    raw = tmp_path / "family-pets.pth"
    torch.save({"epoch": 12, "state_dict": finetuned.state_dict()}, raw)
    (tmp_path / "labels.txt").write_text("\n".join(LABELS) + "\n")
    checkpoint = tmp_path / "family.pt"
    out = bulktag(
        worker_env,
        "weights",
        "import-custom",
        str(raw),
        "--labels",
        str(tmp_path / "labels.txt"),
        "-o",
        str(checkpoint),
    )
    model_id = out.split("model id ")[1].split(",")[0]
    photos = tmp_path / "photos"
    corpus = build_corpus(photos, 10, sizes=[(640, 480), (320, 240)], repeat_fraction=0.0)
    env = {**worker_env, "BULKTAG_WEIGHTS": str(checkpoint)}

    # When a real worker tags the folder with it
    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        bulktag(env, "submit", str(photos), "--job", "pets", "--wait")
        records = [json.loads(x) for x in bulktag(env, "results", "pets").splitlines()]
        models = bulktag(env, "models")

    # Then every record carries the custom model's labels and agrees with torchvision
    assert sorted(r["uri"] for r in records) == sorted(str(p) for p in corpus.unique)
    for rec in records:
        assert rec["status"] == "ok" and rec["model"] == model_id
        indices, scores = reference_top3(finetuned, Path(rec["uri"]))
        assert [t["index"] for t in rec["top3"]] == indices, rec["uri"]
        assert [t["label"] for t in rec["top3"]] == [LABELS[i] for i in indices]
        for got, want in zip(rec["top3"], scores, strict=True):
            assert abs(got["score"] - want) <= 1e-4, rec["uri"]
    assert f"* {model_id}" in models

    # ...and labels, search and sidecars use its labels (published by the worker)
    env_no_local = {**env, "BULKTAG_WEIGHTS": str(tmp_path / "elsewhere.pt")}
    assert bulktag(env_no_local, "labels").splitlines() == [
        f"{i}\t{n}" for i, n in enumerate(LABELS)
    ]
    top1 = records[0]["top3"][0]["label"]
    found = bulktag(env_no_local, "search", top1.upper(), "--top1", "--format", "paths")
    want_top1 = [r["uri"] for r in records if r["top3"][0]["label"] == top1]
    assert sorted(found.splitlines()) == sorted(want_top1)
    counts = bulktag(env_no_local, "labels", "--counts").splitlines()
    assert sum(int(line.split("\t")[0]) for line in counts) == 3 * len(records)
    bulktag(env_no_local, "sidecars", "pets")
    if shutil.which("exiftool"):
        sidecar = Path(records[0]["uri"] + ".xmp")
        read = subprocess.run(
            ["exiftool", "-j", "-Subject", str(sidecar)], capture_output=True, text=True, check=True
        )
        subject = json.loads(read.stdout)[0]["Subject"]
        assert subject == [t["label"] for t in records[0]["top3"]]
