"""Every kind of hostile or awkward file, straight through decode + preprocess.

The real-worker version is tests/integration/test_hostile_inputs.py; this one is fast
and names the exact refusal for each kind.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import torch

from tasks.decode import (
    PRESET_RESIZE,
    check_resize_budget,
    configure_limits,
    decode_image,
    reference_transform,
)
from tasks.errors import TooLarge, UriError
from tests.hostile_corpus import KINDS, MAX_PIXELS, Kind, build_hostile_corpus


def decode_and_preprocess(data: bytes, max_pixels: int) -> torch.Tensor:
    """The exact path with every limit: decode, the resize budget, the reference preset."""
    img = decode_image(data, max_pixels)
    check_resize_budget(img.size, max_pixels)
    return reference_transform()(img)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    configure_limits(MAX_PIXELS)
    reference_transform()  # import torchvision once, outside the timed checks
    written = build_hostile_corpus(tmp_path_factory.mktemp("hostile"))
    return {kind.name: Path(path) for path, kind in written.items()}


def test_the_corpus_has_at_least_fifteen_kinds() -> None:
    assert len(KINDS) >= 15
    assert len({k.filename for k in KINDS}) == len(KINDS)
    assert {k.expect for k in KINDS} == {"ok", "error"}


# The byte cap is the fetcher's job (tasks.fetch), proven by the real-worker test.
DECODER_KINDS = [k for k in KINDS if k.name != "file over the byte cap"]


@pytest.mark.parametrize("kind", DECODER_KINDS, ids=[k.filename for k in DECODER_KINDS])
def test_each_kind_is_tagged_or_refused_with_its_reason(
    kind: Kind, corpus: dict[str, Path]
) -> None:
    data = corpus[kind.name].read_bytes()
    started = time.perf_counter()
    if kind.expect == "ok":
        tensor = decode_and_preprocess(data, MAX_PIXELS)
        assert tuple(tensor.shape) == (3, 224, 224)
    else:
        with pytest.raises(UriError) as info:
            decode_and_preprocess(data, MAX_PIXELS)
        assert kind.reason in str(info.value).lower()
    # no kind may cost more than a fraction of a second (the 1x60000 sliver took 84 s)
    assert time.perf_counter() - started < 2.0


def test_sixteen_bit_greyscale_keeps_its_tones(corpus: dict[str, Path]) -> None:
    # Pillow's convert("RGB") clips 16-bit values at 255: the ramp would come out white
    img = decode_image(corpus["16-bit greyscale PNG"].read_bytes(), MAX_PIXELS)
    pixels = np.asarray(img)
    assert img.mode == "RGB"
    assert pixels.min() == 0 and pixels.max() == 255
    assert 100 < pixels.mean() < 155


def test_extreme_aspect_ratio_is_refused_before_resizing() -> None:
    from tasks.decode import check_resize_budget

    check_resize_budget((4000, 50), 64_000_000)  # a banner: fine
    with pytest.raises(TooLarge, match="aspect ratio"):
        check_resize_budget((1, 60_000), 64_000_000)


def test_resize_budget_uses_the_presets_own_size() -> None:
    assert reference_transform().resize_size == [PRESET_RESIZE]
