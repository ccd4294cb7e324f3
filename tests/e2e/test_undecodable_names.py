"""File names and list lines that are not UTF-8, through a real worker (issue 16, finding 5).

Before: one Latin-1 file name failed the *whole* submission with a UnicodeEncodeError
naming nothing, and a Latin-1 list line failed with "position 38". Now the file is
tagged like its neighbours under a percent-encoded ``file://`` URI, and a remote URI
line that cannot be decoded stops the submission with one line naming file and line.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import redis
from PIL import Image

from tasks.fetch import local_path
from tests.reference import load_reference_model, reference_top3
from tests.servers import BULKTAG, REPO, running_worker

pytestmark = pytest.mark.e2e


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=180
    )


def noise_jpeg(path: bytes, seed: int) -> None:
    Image.effect_noise((320 + seed, 240), 40 + seed).convert("RGB").save(
        os.fsdecode(path), "JPEG", quality=85
    )


def test_latin1_names_are_tagged_and_bad_list_lines_are_named(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, dev_weights: Path
) -> None:
    # Given a folder of 3 photos, one with a Latin-1 name (byte 0xE9, invalid UTF-8),
    # and one more in a sub-folder whose own name is Latin-1
    folder = os.fsencode(tmp_path / "photos")
    os.makedirs(os.path.join(folder, b"f\xeate"))
    names = [b"a.jpg", b"caf\xe9.jpg", b"z.jpg", os.path.join(b"f\xeate", b"b.jpg")]
    for seed, name in enumerate(names):
        noise_jpeg(os.path.join(folder, name), seed)

    with running_worker(worker_env, tmp_path / "worker.log", redis_client, 1):
        # When the folder is submitted
        sub = run(worker_env, "submit", os.fsdecode(folder), "--job", "latin", "--wait")
        assert sub.returncode == 0, sub.stderr
        status = json.loads(run(worker_env, "status", "latin", "--json").stdout)
        out = run(worker_env, "results", "latin").stdout
        records = [json.loads(line) for line in out.splitlines()]

        # Then nothing of the submission is lost: 4 URIs, 4 ok records
        assert status["state"] == "done"
        assert (status["total"], status["ok"], status["error"]) == (4, 4, 0)
        base = folder.decode("ascii")
        assert sorted(r["uri"] for r in records) == sorted(
            [
                f"{base}/a.jpg",
                f"{base}/z.jpg",
                f"file://{base}/caf%E9.jpg",
                f"file://{base}/f%EAte/b.jpg",
            ]
        )

        # When a list names a Latin-1 path and then a Latin-1 URL
        listing = tmp_path / "list.txt"
        listing.write_bytes(
            os.path.join(folder, b"caf\xe9.jpg") + b"\n" + b"https://example.com/caf\xe9.jpg\n"
        )
        bad = run(worker_env, "submit", f"@{listing}", "--job", "listed", "--wait")
        # Then the submission stops with one line naming the file and the line
        assert bad.returncode == 1
        assert bad.stderr.strip().splitlines() == [
            f"bulktag: error: {listing} line 2: not valid UTF-8 (byte 0xe9 at column 24); "
            "save the list as UTF-8 or percent-encode the URI"
        ]

    # And the Latin-1 files were tagged from their own bytes: the plain torchvision
    # pipeline on the same weights agrees
    model = load_reference_model(dev_weights)
    for rec in records:
        indices, scores = reference_top3(model, local_path(rec["uri"]))
        assert [t["index"] for t in rec["top3"]] == indices, rec["uri"]
        for got, want in zip(rec["top3"], scores, strict=True):
            assert abs(got["score"] - want) <= 1e-4, rec["uri"]
