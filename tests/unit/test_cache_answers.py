"""`bulktag run` answers cached images itself: the worker's records, written once."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from PIL import Image

from producer.cache_answers import BATCH, answer_from_cache, answerable
from tasks.decode import decode_image
from tasks.errors import DecodeError
from tasks.records import Record
from tasks.settings import Settings
from tasks.store import ResultStore
from tests.unit.conftest import TOP3

MODEL = "resnet18-0123456789ab"


def submitted(store: ResultStore, job: str, uris: list[str]) -> None:
    assert store.create_job(job, 32, "test")
    store.add_uris(job, store.status(job).total, [uris])
    store.finish_enumeration(job)


def write(path: Path, content: bytes) -> str:
    path.write_bytes(content)
    return hashlib.sha256(content).hexdigest()


def test_cached_local_images_get_the_workers_records_and_the_rest_stay_pending(
    store: ResultStore, tmp_path: Path
) -> None:
    # Given a job of six local files: three the cache knows, a new photo, a broken file
    known_a = write(tmp_path / "a.jpg", b"photo a")
    known_b = write(tmp_path / "b.jpg", b"photo b")
    known_e = write(tmp_path / "e.jpg", b"photo e")
    Image.new("RGB", (64, 48), "red").save(tmp_path / "c.jpg")  # new: the worker's
    broken = write(tmp_path / "d.jpg", b"\xff\xd8\xff truncated")
    names = ("a.jpg", "b.jpg", "c.jpg", "d.jpg", "missing.jpg", "e.jpg")
    uris = [str(tmp_path / n) for n in names]
    submitted(store, "warm", uris)
    top = [{"label": t.label, "index": t.index, "score": t.score} for t in TOP3]
    store.cache_top3(MODEL, {known_a: top, known_b: top, known_e: top})
    settings = Settings(allowed_roots=(tmp_path,))

    # When the producer answers from the cache
    assert answer_from_cache(store, "warm", MODEL, settings) == 4

    # Then the cached three have the records a worker would write (ok, deduplicated)
    records = {uri: rec for _, uri, rec in store.records("warm")}
    assert records[uris[0]] == Record(uris[0], known_a, "ok", None, TOP3, MODEL)
    assert records[uris[1]] == Record(uris[1], known_b, "ok", None, TOP3, MODEL)
    assert records[uris[5]] == Record(uris[5], known_e, "ok", None, TOP3, MODEL)
    # ...the broken file is refused with the worker's own decode reason
    with pytest.raises(DecodeError) as refusal:
        decode_image((tmp_path / "d.jpg").read_bytes(), settings.max_pixels)
    assert records[uris[3]] == Record(uris[3], broken, "error", str(refusal.value), None, MODEL)
    # ...and the new photo and the missing file are left to the worker
    assert records[uris[2]] is None and records[uris[4]] is None
    status = store.status("warm")
    assert (status.ok, status.error, status.deduped, status.pending) == (3, 1, 3, 2)
    assert status.state == "running"

    # And a worker writing the same URI afterwards does not count it twice
    store.record_outcomes("warm", [(0, records[uris[0]], True)])
    assert store.status("warm").ok == 3


def test_a_first_run_stops_the_pass_after_one_batch_of_misses(
    store: ResultStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    uris = [str(tmp_path / f"{i}.jpg") for i in range(3 * BATCH)]
    for i, uri in enumerate(uris):
        Path(uri).write_bytes(b"new %d" % i)
    submitted(store, "cold", uris)
    import tasks.fetch

    reads: list[str] = []
    real = tasks.fetch.fetch_local
    monkeypatch.setattr(tasks.fetch, "fetch_local", lambda u, s: reads.append(u) or real(u, s))
    assert answer_from_cache(store, "cold", MODEL, Settings(allowed_roots=(tmp_path,))) == 0
    assert len(reads) == BATCH  # not every file read twice on a run with nothing cached


def test_only_the_reference_variant_is_keyed_by_the_plain_model_id() -> None:
    from tasks.inference import variant_id

    for decode in ("exact", "fast"):
        for precision in ("fp32", "bf16", "fp16"):
            plain = variant_id(MODEL, decode=decode, precision=precision) == MODEL
            assert answerable(decode, precision) == plain
