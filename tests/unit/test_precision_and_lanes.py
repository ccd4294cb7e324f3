"""Precision options, the model-id variant, lane planning and the worker's hot-path flags."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from producer.cli import build_parser
from producer.samples import build_corpus
from tasks.errors import ConfigError
from tasks.inference import Tagger, check_precision, variant_id
from tasks.lanes import plan_groups, tag_contents
from tasks.preprocess import decode_crop, normalize
from tasks.settings import Settings
from weights.checkpoint import load_checkpoint

MAX_PIXELS = 64_000_000


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[bytes]:
    root = tmp_path_factory.mktemp("photos")
    corpus = build_corpus(root, 6, sizes=[(640, 480), (480, 640)], repeat_fraction=0)
    return [p.read_bytes() for p in corpus.unique]


def test_bf16_gives_valid_top3_close_to_fp32(dev_weights: Path, photos: list[bytes]) -> None:
    ckpt = load_checkpoint(dev_weights)
    fp32 = Tagger.from_checkpoint(ckpt)
    bf16 = Tagger.from_checkpoint(ckpt, precision="bf16")
    batch = normalize([decode_crop(d, MAX_PIXELS) for d in photos])
    ref, got = fp32.top3_batch(batch), bf16.top3_batch(batch)
    for top in got:
        assert len({t["index"] for t in top}) == 3
        scores = [t["score"] for t in top]
        assert scores == sorted(scores, reverse=True) and all(0 < s < 1 for s in scores)
        assert all(t["label"] == bf16.categories[t["index"]] for t in top)
    # bf16 keeps ~3 significant digits: scores stay close to fp32's
    pairs = [(a, b) for r, g in zip(ref, got, strict=True) for a, b in zip(r, g, strict=True)]
    worst = max(abs(a["score"] - b["score"]) for a, b in pairs)
    assert worst < 0.02
    assert bf16.model_id == fp32.model_id + "+bf16"


def test_fp32_matches_the_unfused_model(dev_weights: Path, photos: list[bytes]) -> None:
    # BatchNorm folding is a rewrite, not an approximation: logits agree to ~1e-5
    from weights.model import build_model

    ckpt = load_checkpoint(dev_weights)
    plain = build_model(ckpt)
    batch = normalize([decode_crop(d, MAX_PIXELS) for d in photos])
    with torch.inference_mode():
        want = torch.softmax(plain(batch), dim=1).topk(3, dim=1)
    got = Tagger.from_checkpoint(ckpt).top3_batch(batch)
    assert [[t["index"] for t in row] for row in got] == want.indices.tolist()
    scores = torch.tensor([[t["score"] for t in row] for row in got])
    assert torch.allclose(scores, want.values, atol=1e-5)


def test_precision_combinations_are_checked() -> None:
    check_precision("fp32", "cpu")
    check_precision("bf16", "cpu")
    check_precision("fp16", "cuda")  # checks the combination only; never touches CUDA
    with pytest.raises(ConfigError, match="fp16 needs --device cuda"):
        check_precision("fp16", "cpu")
    check_precision("int8", "cpu")
    with pytest.raises(ConfigError, match="int8 runs on CPU only"):
        check_precision("int8", "cuda")
    with pytest.raises(ConfigError, match="precision must be one of"):
        check_precision("int4", "cpu")


def test_variant_id_names_non_reference_hot_paths() -> None:
    assert variant_id("resnet18-abc") == "resnet18-abc"
    assert variant_id("resnet18-abc", decode="fast") == "resnet18-abc+fast"
    assert variant_id("resnet18-abc", decode="fast", precision="bf16") == "resnet18-abc+fast+bf16"


@pytest.mark.parametrize(
    ("count", "lanes", "batch", "sizes"),
    [
        (32, 2, 32, [8, 6, 5, 4, 4, 4, 1]),
        (29, 2, 32, [8, 6, 4, 4, 4, 3]),
        (32, 1, 32, [32]),
        (29, 1, 16, [14, 15]),
        (100, 1, 16, [14, 14, 14, 15, 14, 14, 15]),
        (3, 1, 16, [3]),
        (0, 1, 16, []),
        (32, 2, 4, [4] * 8),
        (3, 4, 32, [1, 1, 1]),
        (0, 2, 32, []),
    ],
)
def test_plan_groups_shrink_for_several_lanes_and_split_evenly_for_one(
    count: int, lanes: int, batch: int, sizes: list[int]
) -> None:
    groups = plan_groups(count, lanes, batch)
    assert [len(g) for g in groups] == sizes
    assert [i for g in groups for i in g] == list(range(count))


def test_lanes_tag_good_contents_and_isolate_bad_ones(
    dev_weights: Path, photos: list[bytes]
) -> None:
    tagger = Tagger.from_checkpoint(load_checkpoint(dev_weights))
    contents = [(f"h{i}", d) for i, d in enumerate(photos)] + [("bad", b"\xff\xd8\xff broken")]
    before = tagger.forward_images
    with ThreadPoolExecutor(2) as pool:
        fresh, failures = tag_contents(
            contents, tagger=tagger, pool=pool, lanes=2, batch_size=32, max_pixels=MAX_PIXELS
        )
    assert set(fresh) == {f"h{i}" for i in range(len(photos))}
    assert set(failures) == {"bad"} and "truncated" in str(failures["bad"])
    assert tagger.forward_images - before == len(photos)
    # the same images through one lane give the same answers
    with ThreadPoolExecutor(1) as pool:
        again, _ = tag_contents(
            contents[:-1], tagger=tagger, pool=pool, lanes=1, batch_size=4, max_pixels=MAX_PIXELS
        )
    for key, top in again.items():
        assert [t["index"] for t in top] == [t["index"] for t in fresh[key]]


class NumberedLanes(ThreadPoolExecutor):
    """A pool that tells each lane its submission order (in ``LANE.number``)."""

    def __init__(self, workers: int) -> None:
        super().__init__(workers)
        self.submitted = 0

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        number, self.submitted = self.submitted, self.submitted + 1

        def numbered() -> Any:
            LANE.number = number
            return fn(*args, **kwargs)

        return super().submit(numbered)


LANE = threading.local()


def test_a_failing_forward_stops_every_lane_before_the_error_is_raised(
    dev_weights: Path,
) -> None:
    # Given 40 small images (10 groups on 2 lanes) and a forward that fails on the first
    # submitted lane (the future tag_contents looks at first) while the other lane is in
    # the middle of a slow forward
    tagger = Tagger.from_checkpoint(load_checkpoint(dev_weights))
    contents = []
    for i in range(40):
        out = io.BytesIO()
        Image.new("RGB", (64, 48), (i, 2 * i, 3 * i)).save(out, "JPEG")
        contents.append((f"h{i}", out.getvalue()))
    starts: list[float] = []
    other_lane_forwarding = threading.Event()

    def forward(batch: torch.Tensor) -> list[list[dict[str, Any]]]:
        if LANE.number == 0:
            other_lane_forwarding.wait(timeout=10)
            raise RuntimeError("model fault")
        starts.append(time.monotonic())
        other_lane_forwarding.set()
        time.sleep(0.1)
        return [[{"label": "x", "index": 0, "score": 1.0}]] * len(batch)

    with NumberedLanes(2) as pool:
        # When the chunk's lanes run
        with pytest.raises(RuntimeError, match="model fault"):
            tag_contents(
                contents,
                tagger=tagger,
                pool=pool,
                lanes=2,
                batch_size=4,
                max_pixels=MAX_PIXELS,
                forward=forward,
            )
        raised_at = time.monotonic()
        time.sleep(0.3)  # room for an orphaned lane to start more forwards
    # Then no forward started after the error reached the caller, and the healthy lane
    # stopped taking groups instead of working through the other eight
    assert starts and all(t < raised_at for t in starts)
    assert len(starts) <= 2


def test_worker_flags_parse() -> None:
    flags = ["--precision", "bf16", "--decode", "fast", "--device", "cpu"]
    sizing = ["--concurrency", "auto", "--threads", "2", "--batch-size", "16"]
    args = build_parser().parse_args(["worker", *flags, *sizing])
    assert (args.precision, args.decode, args.device) == ("bf16", "fast", "cpu")
    assert (args.concurrency, args.threads, args.batch_size) == (0, 2, 16)
    for bad in (["--precision", "fp8"], ["--decode", "turbo"], ["--threads", "0"]):
        with pytest.raises(SystemExit):
            build_parser().parse_args(["worker", *bad])


def test_hot_path_settings_from_env() -> None:
    s = Settings.from_env({"BULKTAG_DECODE": "FAST", "BULKTAG_PRECISION": "bf16"})
    assert (s.decode, s.precision) == ("fast", "bf16")
    d = Settings.from_env({})
    assert (d.decode, d.precision, d.device) == ("exact", "fp32", "cpu")
    with pytest.raises(ConfigError, match="BULKTAG_DECODE"):
        Settings.from_env({"BULKTAG_DECODE": "lossy"})
    # lanes x torch threads never exceed the process's threads
    s = Settings(concurrency=1, threads=4, lanes=2)
    assert (s.effective_lanes, s.torch_threads) == (2, 2)
    assert Settings(concurrency=1, threads=2).torch_threads == 1
