"""int8 precision: calibration files, their refusals, and agreement with fp32."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch

from producer.cli import main
from producer.samples import build_corpus
from tasks.errors import ConfigError, WeightsError
from tasks.inference import Tagger
from tasks.preprocess import decode_crop, normalize
from tasks.quantize import calibrate_images, load_calibration, write_calibration
from weights.checkpoint import load_checkpoint
from weights.fetch import write_untrained

MAX_PIXELS = 64_000_000


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("int8-photos")
    build_corpus(root, 24, sizes=[(640, 480), (480, 640), (800, 600)], repeat_fraction=0)
    return root


@pytest.fixture(scope="module")
def photos(photo_dir: Path) -> list[bytes]:
    return [p.read_bytes() for p in sorted(photo_dir.glob("*.jpg"))]


@pytest.fixture(scope="module")
def calibration_file(
    dev_weights: Path, photos: list[bytes], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    ckpt = load_checkpoint(dev_weights)
    observers, used, skipped = calibrate_images(ckpt, photos[:12], max_pixels=MAX_PIXELS)
    assert (used, skipped) == (12, 0)
    path = tmp_path_factory.mktemp("cal") / "weights.int8"
    write_calibration(path, ckpt, observers, source="test photos", images=used)
    return path


def test_int8_top3_agrees_with_fp32_on_photos_it_was_not_calibrated_on(
    dev_weights: Path, photos: list[bytes], calibration_file: Path
) -> None:
    ckpt = load_checkpoint(dev_weights)
    cal = load_calibration(calibration_file, ckpt)
    int8 = Tagger.from_checkpoint(ckpt, precision="int8", calibration=cal)
    fp32 = Tagger.from_checkpoint(ckpt)
    batch = normalize([decode_crop(d, MAX_PIXELS) for d in photos[12:]])
    ref, got = fp32.top3_batch(batch), int8.top3_batch(batch)
    top1 = sum(r[0]["index"] == g[0]["index"] for r, g in zip(ref, got, strict=True))
    assert top1 >= 9, f"int8 top-1 agreed on {top1} of 12 held-out photos"
    worst = max(
        abs(a["score"] - b["score"])
        for r, g in zip(ref, got, strict=True)
        for a, b in zip(r, g, strict=True)
    )
    assert worst < 0.05
    assert int8.model_id == f"{fp32.model_id}+int8-{cal.sha256[:8]}"


def test_one_calibration_file_gives_identical_results_in_every_process(
    dev_weights: Path, photos: list[bytes], calibration_file: Path
) -> None:
    # Workers share a model id and a dedupe cache only because this holds.
    ckpt = load_checkpoint(dev_weights)
    batch = normalize([decode_crop(d, MAX_PIXELS) for d in photos[:6]])
    outs = []
    for _ in range(2):
        cal = load_calibration(calibration_file, ckpt)
        outs.append(
            Tagger.from_checkpoint(ckpt, precision="int8", calibration=cal).top3_batch(batch)
        )
    assert outs[0] == outs[1]


def test_a_calibration_for_other_weights_is_refused(calibration_file: Path, tmp_path: Path) -> None:
    other = tmp_path / "other.pt"
    write_untrained(other, seed=1)
    with pytest.raises(WeightsError, match="calibrated for checkpoint"):
        load_calibration(calibration_file, load_checkpoint(other))


def test_int8_without_a_calibration_says_how_to_make_one(dev_weights: Path, tmp_path: Path) -> None:
    ckpt = load_checkpoint(dev_weights)
    with pytest.raises(ConfigError, match="bulktag weights calibrate"):
        load_calibration(tmp_path / "missing.int8", ckpt)
    with pytest.raises(ConfigError, match="needs a calibration"):
        Tagger.from_checkpoint(ckpt, precision="int8")


class _Boom:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (Path("/nonexistent").write_text, ("pwned",))


def test_calibration_files_are_read_weights_only(dev_weights: Path, tmp_path: Path) -> None:
    bad = tmp_path / "evil.int8"
    bad.write_bytes(
        pickle.dumps({"format": "bulktag-int8-calibration/1", "x": _Boom()}, protocol=2)
    )
    with pytest.raises(WeightsError, match="not a loadable calibration file"):
        load_calibration(bad, load_checkpoint(dev_weights))
    plain = tmp_path / "plain.int8"
    torch.save({"format": "something else"}, plain)
    with pytest.raises(WeightsError, match="not a bulktag int8 calibration file"):
        load_calibration(plain, load_checkpoint(dev_weights))


def test_cli_calibrate_writes_a_file_workers_can_load(
    dev_weights: Path, photo_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "cal.int8"
    argv = ["weights", "calibrate", "-o", str(dev_weights), "--images", str(photo_dir)]
    assert main([*argv, "--count", "4", "--calibration", str(out)]) == 0
    cal = load_calibration(out, load_checkpoint(dev_weights))
    assert cal.meta["images"] == 4
    assert f"+int8-{cal.short_id}" in capsys.readouterr().out
