"""tag_items on a real (untrained) ResNet-18: dedupe, per-URI errors, one record each."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from producer.samples import build_corpus
from tasks.fetch import fetch_bytes
from tasks.inference import Tagger
from tasks.pipeline import tag_items
from tasks.settings import Settings
from tests.unit.conftest import memory_store
from weights.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def tagger(dev_weights: Path) -> Tagger:
    return Tagger.from_checkpoint(load_checkpoint(dev_weights))


def test_repeat_images_run_inference_once(tagger: Tagger, tmp_path: Path) -> None:
    corpus = build_corpus(tmp_path, 10, sizes=[(320, 240)], repeat_fraction=0.3, broken=2)
    paths = [*corpus.all, tmp_path / "missing.jpg", corpus.unique[0]]
    items = [(i, str(p)) for i, p in enumerate(paths)]
    store = memory_store()
    settings = Settings(allowed_roots=(tmp_path,), batch_size=4)
    before = tagger.forward_images
    with ThreadPoolExecutor(2) as pool:
        outcomes, report = tag_items(
            items, tagger=tagger, store=store, settings=settings, fetch=fetch_bytes, pool=pool
        )
        # Then: one record per item, in order; only unique decodable content was forwarded
        assert [i for i, _, _ in outcomes] == list(range(len(items)))
        assert tagger.forward_images - before == len(corpus.unique) == report.forwarded
        assert report.ok == len(corpus.unique) + len(corpus.repeats) + 1
        assert report.error == len(corpus.broken) + 1
        assert report.deduped == len(corpus.repeats) + 1
        by_uri = {rec.uri: rec for _, rec, _ in outcomes}
        assert by_uri[str(tmp_path / "missing.jpg")].error.startswith("no such file")
        assert all(len(r.top3 or []) == 3 for r in by_uri.values() if r.status == "ok")

        # And a second pass over the same items is served entirely from the cache
        outcomes2, report2 = tag_items(
            items, tagger=tagger, store=store, settings=settings, fetch=fetch_bytes, pool=pool
        )
    assert report2.forwarded == 0
    assert report2.deduped == report2.ok == report.ok
    assert [r.top3 for _, r, _ in outcomes2] == [r.top3 for _, r, _ in outcomes]
