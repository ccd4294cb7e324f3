"""`--precision int8` end to end: the CLI calibrates, a real worker loads the file.

The proof of correct wiring is equality: the worker's records are exactly what the same
calibration file gives in this process, and the model id names that file.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from producer.samples import build_corpus
from tasks.inference import Tagger
from tasks.preprocess import decode_crop, normalize
from tasks.quantize import load_calibration
from tests.e2e.test_tag_folder import bulktag
from tests.servers import BULKTAG, REPO, running_worker
from weights.checkpoint import load_checkpoint

pytestmark = pytest.mark.e2e


def test_int8_worker_tags_a_folder_exactly_as_its_calibration_file_says(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, dev_weights: Path
) -> None:
    photos = tmp_path / "photos"
    corpus = build_corpus(photos, 14, sizes=[(640, 480), (1024, 768)], repeat_fraction=0.15)
    cal_file = tmp_path / "weights.int8"
    env = {**worker_env, "BULKTAG_INT8_CALIBRATION": str(cal_file)}

    # A worker asked for int8 without a calibration file refuses to start, in one line
    refused = bulktag_fails(env, "worker", "--precision", "int8")
    assert "bulktag weights calibrate" in refused and "Traceback" not in refused

    bulktag(
        env,
        "weights",
        "calibrate",
        "--images",
        str(photos),
        "--count",
        "6",
        "--calibration",
        str(cal_file),
    )
    with running_worker(
        env, tmp_path / "worker.log", redis_client, 1, "--precision", "int8", "--decode", "fast"
    ):
        bulktag(env, "submit", str(photos), "--job", "q", "--wait")
        status = json.loads(bulktag(env, "status", "q", "--json"))
        records = [json.loads(x) for x in bulktag(env, "results", "q").splitlines()]

    assert status["total"] == len(corpus.all) == status["ok"]
    assert status["deduped"] == len(corpus.repeats)
    ckpt = load_checkpoint(dev_weights)
    cal = load_calibration(cal_file, ckpt)
    tagger = Tagger.from_checkpoint(ckpt, precision="int8", decode="fast", calibration=cal)
    assert {r["model"] for r in records} == {f"{ckpt.model_id}+fast+int8-{cal.short_id}"}
    for rec in records:
        crop = decode_crop(Path(rec["uri"]).read_bytes(), 64_000_000, "fast")
        want = tagger.top3_batch(normalize([crop]))[0]
        assert [t["index"] for t in rec["top3"]] == [t["index"] for t in want]
        for got, exp in zip(rec["top3"], want, strict=True):
            assert got["score"] == pytest.approx(exp["score"], abs=1e-5)


def bulktag_fails(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode != 0
    return proc.stderr + proc.stdout
