"""`bulktag weights import-custom`: a fine-tuned ResNet-18 with its own N labels."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image
from torchvision.models import resnet18

from producer.cli import main
from tasks.errors import WeightsError
from tasks.inference import Tagger
from tasks.preprocess import decode_crop, normalize
from tasks.quantize import calibrate_images, load_calibration, write_calibration
from weights.checkpoint import load_checkpoint, read_pin, sha256_file
from weights.custom import import_custom

LABELS = ["cat", "dog", "receipt", "screenshot", "document"]
MAX_PIXELS = 64_000_000


def fine_tuned(tmp_path: Path, classes: int, seed: int = 5, **wrap: bool) -> Path:
    """A seeded resnet18 with ``classes`` outputs saved as a training script would."""
    torch.manual_seed(seed)
    state = resnet18(num_classes=classes).state_dict()
    path = tmp_path / f"finetuned-{classes}.pth"
    if wrap.get("data_parallel"):
        state = {f"module.{k}": v for k, v in state.items()}
    torch.save({"epoch": 7, "model_state_dict": state} if wrap.get("nested") else state, path)
    return path


def labels_file(tmp_path: Path, labels: list[str], name: str = "labels.txt") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(labels) + "\n\n", encoding="utf-8")
    return path


def photos(n: int, seed: int = 0) -> list[bytes]:
    import io

    gen = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        pixels = (torch.rand(96, 128, 3, generator=gen) * 255).to(torch.uint8).numpy()
        buf = io.BytesIO()
        Image.fromarray(pixels).save(buf, format="JPEG")
        out.append(buf.getvalue())
    return out


def test_import_writes_a_pinned_custom_checkpoint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = fine_tuned(tmp_path, 5, nested=True, data_parallel=True)
    dest = tmp_path / "family.pt"
    args = ["weights", "import-custom", str(src), "--labels", str(labels_file(tmp_path, LABELS))]
    assert main([*args, "-o", str(dest)]) == 0
    ckpt = load_checkpoint(dest)  # verified against its own .sha256, weights_only
    assert read_pin(dest) == sha256_file(dest) == ckpt.sha256
    assert ckpt.model_id == f"resnet18-{ckpt.sha256[:12]}"
    assert ckpt.categories == LABELS
    assert ckpt.meta["trained"] is True and ckpt.meta["source"] == "custom"
    assert f"model id {ckpt.model_id}, 5 labels" in capsys.readouterr().out
    # the same weights give the same logits as the model they came from
    torch.manual_seed(5)
    reference = resnet18(num_classes=5).eval()
    tagger = Tagger.from_checkpoint(ckpt)
    x = normalize([decode_crop(d, MAX_PIXELS) for d in photos(3)])
    with torch.inference_mode():
        want = torch.softmax(reference(x), dim=1).topk(3, dim=1)
    got = tagger.top3_batch(x)
    for row, idx, score in zip(got, want.indices.tolist(), want.values.tolist(), strict=True):
        assert [t["index"] for t in row] == idx
        assert [t["label"] for t in row] == [LABELS[i] for i in idx]
        assert max(abs(t["score"] - s) for t, s in zip(row, score, strict=True)) <= 1e-4


def test_a_two_class_model_records_its_top_two(tmp_path: Path) -> None:
    dest = tmp_path / "two.pt"
    import_custom(fine_tuned(tmp_path, 2), labels_file(tmp_path, ["keep", "discard"]), dest)
    tagger = Tagger.from_checkpoint(load_checkpoint(dest))
    rows = tagger.top3_batch(normalize([decode_crop(d, MAX_PIXELS) for d in photos(2)]))
    assert [sorted(t["label"] for t in row) for row in rows] == [["discard", "keep"]] * 2
    assert all(abs(sum(t["score"] for t in row) - 1.0) < 1e-5 for row in rows)


@pytest.mark.parametrize(
    ("classes", "labels", "message"),
    [
        (5, LABELS[:4], "fc of 5 outputs but the labels file has 4 labels"),
        (5, ["only"], "1 labels; a classifier needs at least 2"),
        (5, ["cat", "dog", "Cat", "a", "b"], "label 'Cat' on line 3 repeats line 1"),
        (5, ["cat", "dog", "pets|cat", "a", "b"], "label 'pets|cat' on line 3 holds"),
    ],
)
def test_mismatched_labels_are_refused(
    tmp_path: Path, classes: int, labels: list[str], message: str
) -> None:
    with pytest.raises(WeightsError, match=message):
        import_custom(fine_tuned(tmp_path, classes), labels_file(tmp_path, labels), tmp_path / "x")
    assert not (tmp_path / "x").exists()


def test_what_is_not_a_resnet18_state_dict_is_refused(tmp_path: Path) -> None:
    labels = labels_file(tmp_path, LABELS)
    pickled_model = tmp_path / "model.pth"
    torch.manual_seed(0)
    torch.save(resnet18(num_classes=5), pickled_model)  # a whole pickled module: code
    with pytest.raises(WeightsError, match="a pickled model cannot be loaded safely"):
        import_custom(pickled_model, labels, tmp_path / "x")
    other = tmp_path / "other.pth"
    state = resnet18(num_classes=5).state_dict()
    del state["layer4.1.conv2.weight"]
    torch.save(state, other)
    with pytest.raises(WeightsError, match="does not fit resnet18"):
        import_custom(other, labels, tmp_path / "x")
    junk = tmp_path / "junk.pth"
    torch.save({"epoch": 3, "notes": "no weights"}, junk)
    with pytest.raises(WeightsError, match="holds no ResNet-18 state_dict"):
        import_custom(junk, labels, tmp_path / "x")


def test_int8_calibration_and_fast_decode_work_for_a_custom_model(tmp_path: Path) -> None:
    dest = tmp_path / "family.pt"
    import_custom(fine_tuned(tmp_path, 5), labels_file(tmp_path, LABELS), dest)
    ckpt = load_checkpoint(dest)
    observers, used, _ = calibrate_images(ckpt, photos(8, seed=1), max_pixels=MAX_PIXELS)
    cal_path = tmp_path / "family.pt.int8"
    write_calibration(cal_path, ckpt, observers, source="test", images=used)
    int8 = Tagger.from_checkpoint(
        ckpt, precision="int8", calibration=load_calibration(cal_path, ckpt)
    )
    fast = Tagger.from_checkpoint(ckpt, decode="fast")
    assert int8.model_id.startswith(ckpt.model_id + "+int8-")
    assert fast.model_id == ckpt.model_id + "+fast"
    data = photos(4, seed=2)
    for tagger, mode in ((int8, "exact"), (fast, "fast")):
        rows = tagger.top3_batch(normalize([decode_crop(d, MAX_PIXELS, mode) for d in data]))
        assert all(len(row) == 3 and {t["label"] for t in row} <= set(LABELS) for row in rows)
    assert ckpt.meta["classes"] == 5
