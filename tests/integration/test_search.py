"""`bulktag search` and `bulktag labels` on a real redis-server.

Jobs are seeded through the store's own write path; label names are the ImageNet
categories a worker publishes for the official layout, plus a custom 4-class model
that numbers its classes differently (index 0 is "cat" there, "tench" in ImageNet).
"""

from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path

import pytest
import redis

from producer.cli import main
from tasks.model_labels import ModelLabels
from tasks.model_registry import ModelRegistry
from tasks.store import ResultStore
from tests.labelled_jobs import MODEL, error, ok, seed_job
from weights.fetch import imagenet_categories

CUSTOM = "resnet18-custom000000"
CUSTOM_LABELS = ["cat", "dog", "receipt", "screenshot"]


@pytest.fixture
def archive(redis_url: str) -> ResultStore:
    """Two ImageNet-model jobs (``old`` then ``new``) and one custom-model job."""
    store = ResultStore(redis.Redis.from_url(redis_url, decode_responses=True))
    labels = ModelLabels(store.r)
    labels.save(MODEL, imagenet_categories())
    labels.save(CUSTOM, CUSTOM_LABELS)
    registry = ModelRegistry(store.r)
    registry.loaded(CUSTOM, at=1.0)
    registry.loaded(MODEL, at=2.0)  # the current model
    seed_job(
        store,
        "old",
        [
            ok("/p/old/cat1.jpg", ("tabby", 281, 0.8), ("tiger cat", 282, 0.1)),
            ok("/p/old/fish.jpg", ("tench", 0, 0.9), ("goldfish", 1, 0.05)),
            error("/p/old/broken.jpg"),
        ],
    )
    time.sleep(0.01)  # jobs are ordered by creation time
    seed_job(
        store,
        "new",
        [
            ok("/p/new/cat2.jpg", ("tiger cat", 282, 0.5), ("tabby", 281, 0.3)),
            ok("/p/new/cat3.jpg", ("Egyptian cat", 285, 0.6), ("tabby", 281, 0.05)),
            ok("/p/new/car.jpg", ("sports car", 817, 0.7)),
        ],
    )
    time.sleep(0.01)
    seed_job(
        store,
        "family",
        [ok("/p/fam/kitty.jpg", ("cat", 0, 0.95), ("dog", 1, 0.03), model=CUSTOM)],
    )
    return store


def run(redis_url: str, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["--redis-url", redis_url, *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def paths(out: str) -> list[str]:
    return out.splitlines()


def test_search_finds_any_label_across_jobs_newest_first(
    archive: ResultStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(redis_url, capsys, "search", "Tabby", "--format", "paths")
    assert code == 0
    # newest job first, the latest URIs of a job first
    assert paths(out) == ["/p/new/cat3.jpg", "/p/new/cat2.jpg", "/p/old/cat1.jpg"]
    # several labels: any of them; a class index works as a label
    _, out, _ = run(redis_url, capsys, "search", "sports car", "0", "--format", "paths")
    assert paths(out) == ["/p/new/car.jpg", "/p/old/fish.jpg"]


def test_search_filters_job_score_top1_limit(
    archive: ResultStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    def search(*args: str) -> list[str]:
        code, out, err = run(redis_url, capsys, "search", *args, "--format", "paths")
        assert code == 0, err
        return paths(out)

    assert search("tabby", "--job", "old") == ["/p/old/cat1.jpg"]
    assert search("tabby", "--min-score", "0.2") == ["/p/new/cat2.jpg", "/p/old/cat1.jpg"]
    assert search("tabby", "--top1") == ["/p/old/cat1.jpg"]
    assert search("tabby", "tiger cat", "--top1") == ["/p/new/cat2.jpg", "/p/old/cat1.jpg"]
    assert search("tabby", "--limit", "1") == ["/p/new/cat3.jpg"]
    assert search("tabby", "--model", f"{MODEL}+fast") == []  # shares labels, no records


def test_search_jsonl_and_csv_carry_job_index_and_labels(
    archive: ResultStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    _, out, _ = run(redis_url, capsys, "search", "tench")
    hits = [json.loads(line) for line in out.splitlines()]
    assert len(hits) == 1
    assert {k: hits[0][k] for k in ("job", "index", "uri", "status", "model")} == {
        "job": "old",
        "index": 1,
        "uri": "/p/old/fish.jpg",
        "status": "ok",
        "model": MODEL,
    }
    assert hits[0]["top3"][0] == {"label": "tench", "index": 0, "score": 0.9}
    _, out, _ = run(redis_url, capsys, "search", "tabby", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert [(r["job"], r["index"], r["label1"], r["score1"]) for r in rows] == [
        ("new", "1", "Egyptian cat", "0.600000"),
        ("new", "0", "tiger cat", "0.500000"),
        ("old", "0", "tabby", "0.800000"),
    ]


def test_models_that_number_classes_differently_do_not_mix(
    archive: ResultStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # "tench" is class 0 of ImageNet; class 0 of the custom model is "cat"
    _, out, _ = run(redis_url, capsys, "search", "0", "--format", "paths")
    assert paths(out) == ["/p/old/fish.jpg"]
    # the custom model's labels resolve with --model, and find only its records
    _, out, _ = run(redis_url, capsys, "search", "CAT", "--model", CUSTOM, "--format", "paths")
    assert paths(out) == ["/p/fam/kitty.jpg"]


def test_unknown_label_is_one_line_with_the_closest_names(
    archive: ResultStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(redis_url, capsys, "search", "tabby cats")
    assert code == 1 and out == ""
    assert err == (
        'bulktag: error: unknown label "tabby cats"; '
        'did you mean "tabby", "Egyptian cat", "tiger cat"?\n'
    )
    code, _, err = run(redis_url, capsys, "search", "1000")
    assert err.startswith("bulktag: error: label index 1000 is out of range") and code == 1
    code, _, err = run(redis_url, capsys, "search", "recipt", "--model", CUSTOM)
    assert err == 'bulktag: error: unknown label "recipt"; did you mean "receipt"?\n'
    code, _, err = run(redis_url, capsys, "search", "tabby", "--job", "nope")
    assert err == "bulktag: error: no job named 'nope'\n"


def test_labels_lists_the_model_labels_and_counts_them(
    archive: ResultStore, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(redis_url, capsys, "labels")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 1000
    assert lines[281] == "281\ttabby"
    _, out, _ = run(redis_url, capsys, "labels", "--model", CUSTOM)
    assert out.splitlines() == ["0\tcat", "1\tdog", "2\treceipt", "3\tscreenshot"]

    # --counts: records holding each label in their top-3, most first; the custom
    # model's records are not counted under ImageNet's class 0 and 1
    _, out, err = run(redis_url, capsys, "labels", "--counts")
    rows = [line.split("\t") for line in out.splitlines()]
    assert rows[:3] == [["3", "281", "tabby"], ["2", "282", "tiger cat"], ["1", "0", "tench"]]
    counts = {r[2]: int(r[0]) for r in rows}
    assert counts["goldfish"] == 1 and counts["sports car"] == 1 and counts["hen"] == 0
    assert f"records of {MODEL}" in err
    _, out, _ = run(redis_url, capsys, "labels", "--counts", "--model", CUSTOM)
    assert out.splitlines()[:2] == ["1\t0\tcat", "1\t1\tdog"]


def test_labels_come_from_the_local_checkpoint_before_any_worker_ran(
    redis_url: str,
    dev_weights: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BULKTAG_WEIGHTS", str(dev_weights))
    code, out, err = run(redis_url, capsys, "labels")
    assert code == 0, err
    assert out.splitlines()[0] == "0\ttench" and "1000 labels" in err
    monkeypatch.setenv("BULKTAG_WEIGHTS", str(dev_weights.parent / "missing.pt"))
    code, _, err = run(redis_url, capsys, "search", "tabby")
    assert code == 1
    assert err.startswith("bulktag: error: no labels known for any model")
