"""A checkpoint cannot run code: tampering is caught by the pin, pickled code by weights_only."""

from __future__ import annotations

import pathlib
import shutil
from pathlib import Path

import pytest
import torch

from tasks.errors import WeightsError
from weights.checkpoint import load_checkpoint, sha256_file, sidecar_path


class Payload:
    """Unpickling this creates a marker file: proof that code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[object, ...]]:
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def test_tampered_checkpoint_refuses_to_load_with_a_clear_error(
    dev_weights: Path, tmp_path: Path
) -> None:
    copy = tmp_path / "resnet18.pt"
    shutil.copy(dev_weights, copy)
    shutil.copy(sidecar_path(dev_weights), sidecar_path(copy))
    data = bytearray(copy.read_bytes())
    data[-100] ^= 0x01  # one flipped bit
    copy.write_bytes(bytes(data))
    with pytest.raises(WeightsError) as info:
        load_checkpoint(copy)
    message = str(info.value)
    assert "does not match its pin" in message and "refusing to load" in message
    assert "\n" not in message


def test_pickled_code_in_a_correctly_pinned_checkpoint_never_runs(tmp_path: Path) -> None:
    # Given an attacker who controls both the file and its sha256 sidecar
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pt"
    torch.save({"state_dict": {}, "arch": "resnet18", "x": Payload(marker)}, evil)
    sidecar_path(evil).write_text(f"{sha256_file(evil)}  evil.pt\n")
    # When bulktag loads it
    with pytest.raises(WeightsError, match="not a loadable checkpoint"):
        load_checkpoint(evil)
    # Then weights_only=True refused the object before it could be built
    assert not marker.exists()


@pytest.mark.parametrize(
    ("content", "raised"),
    [
        (b"not a checkpoint at all", "UnpicklingError"),
        (b"\x80\x02\x85.", "IndexError"),  # TUPLE1 on an empty unpickler stack
        (bytes(range(256)) * 8, "any"),
    ],
)
def test_any_pinned_non_checkpoint_is_a_weights_error(
    tmp_path: Path, content: bytes, raised: str
) -> None:
    # torch's weights-only unpickler raises whatever the bytes lead it to (IndexError,
    # KeyError, UnicodeDecodeError, ...); every one must read as "not a checkpoint", or a
    # worker child dies with a traceback and the pool respawns it forever.
    bad = tmp_path / "bad.pt"
    bad.write_bytes(content)
    sidecar_path(bad).write_text(f"{sha256_file(bad)}  bad.pt\n")
    with pytest.raises(WeightsError, match="is not a loadable checkpoint") as caught:
        load_checkpoint(bad)
    if raised != "any":
        assert type(caught.value.__cause__).__name__ == raised
