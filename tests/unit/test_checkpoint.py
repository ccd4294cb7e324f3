"""Checkpoint format, pinning and refusal of tampered or foreign files."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from tasks.errors import WeightsError
from weights.checkpoint import load_checkpoint, read_pin, sha256_file, verify_file
from weights.fetch import import_official, write_untrained
from weights.spec import IMAGENET1K_V1


def test_untrained_checkpoint_is_deterministic_and_labelled(tmp_path: Path) -> None:
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    digest_a = write_untrained(a, seed=0)
    digest_b = write_untrained(b, seed=0)
    assert digest_a == digest_b == sha256_file(a) == read_pin(a)
    assert write_untrained(tmp_path / "c.pt", seed=1) != digest_a
    ckpt = load_checkpoint(a)
    assert ckpt.trained is False
    assert "UNTRAINED" in ckpt.meta["warning"]
    assert ckpt.model_id == f"resnet18-{digest_a[:12]}"
    assert len(ckpt.categories) == 1000 and ckpt.categories[0] == "tench"


def test_checkpoint_loads_with_weights_only(dev_weights: Path) -> None:
    payload = torch.load(dev_weights, weights_only=True)
    assert set(payload) == {"format", "arch", "state_dict", "categories", "meta"}
    assert payload["arch"] == "resnet18"


def test_tampered_checkpoint_is_refused(dev_weights: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.pt"
    shutil.copy(dev_weights, copy)
    shutil.copy(dev_weights.with_name(dev_weights.name + ".sha256"), tmp_path / "w.pt.sha256")
    data = bytearray(copy.read_bytes())
    data[len(data) // 2] ^= 0xFF
    copy.write_bytes(bytes(data))
    with pytest.raises(WeightsError, match="does not match its pin"):
        load_checkpoint(copy)


def test_unpinned_and_missing_checkpoints_are_refused(dev_weights: Path, tmp_path: Path) -> None:
    copy = tmp_path / "w.pt"
    shutil.copy(dev_weights, copy)
    with pytest.raises(WeightsError, match="no pinned sha256"):
        verify_file(copy)
    with pytest.raises(WeightsError, match="not found"):
        verify_file(tmp_path / "missing.pt")
    # an explicit pin (BULKTAG_WEIGHTS_SHA256) works without a sidecar
    assert verify_file(copy, sha256_file(copy)) == sha256_file(copy)


def test_foreign_file_is_refused_even_when_pinned(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(3)}, foreign)
    with pytest.raises(WeightsError, match="not a bulktag checkpoint"):
        load_checkpoint(foreign, sha256_file(foreign))
    other_arch = tmp_path / "other.pt"
    torch.save({"arch": "vit", "state_dict": {}, "categories": []}, other_arch)
    with pytest.raises(WeightsError, match="arch"):
        load_checkpoint(other_arch, sha256_file(other_arch))


def test_import_refuses_a_file_that_is_not_the_official_release(tmp_path: Path) -> None:
    fake = tmp_path / IMAGENET1K_V1.file_name
    torch.save({"conv1.weight": torch.zeros(1)}, fake)
    with pytest.raises(WeightsError, match="pinned to f37072fd"):
        import_official(fake, tmp_path / "out.pt")
    assert not (tmp_path / "out.pt").exists()
