"""An archive folder end to end: HEIC, AVIF and DNG tagged, a video and a note reported."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import redis

from tasks.formats import register_openers
from tests.e2e.test_metrics import scrape, value
from tests.format_fixtures import avif_bytes, dng_bytes, heic_bytes, photo
from tests.integration.test_sidecars import as_list, read_back
from tests.reference import load_reference_model, reference_top3
from tests.servers import BULKTAG, REPO, free_port, running_worker

pytestmark = pytest.mark.e2e


def bulktag(env: dict[str, str], *args: str) -> str:
    proc = subprocess.run(
        [*BULKTAG, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=240
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_heic_avif_and_raw_are_tagged_and_other_files_are_counted(
    worker_env: dict[str, str], redis_client: redis.Redis, tmp_path: Path, dev_weights: Path
) -> None:
    # Given a folder as a phone and a camera leave it: the same photo as PNG, HEIC (upper
    # case extension) and AVIF; two DNGs (one with an embedded preview); a truncated
    # HEIC; a video and a note
    folder = tmp_path / "archive"
    folder.mkdir()
    picture = photo("coffee", (768, 512))
    picture.save(folder / "photo.png")
    heic = heic_bytes(picture)
    (folder / "IMG_0001.HEIC").write_bytes(heic)
    (folder / "photo.avif").write_bytes(avif_bytes(picture))
    (folder / "DSC_0001.DNG").write_bytes(dng_bytes(picture))
    (folder / "DSC_0002.dng").write_bytes(
        dng_bytes(picture, preview=picture.resize((384, 256)), orientation=6)
    )
    (folder / "IMG_0002.heic").write_bytes(heic[: len(heic) // 2])
    (folder / "clip.mov").write_bytes(b"\0\0\0\x14ftypqt  \0\0\0\0qt  " + b"\0" * 512)
    (folder / "notes.txt").write_text("holiday, day 1\n")
    port = free_port()
    env = {**worker_env, "BULKTAG_METRICS_PORT": str(port)}

    with running_worker(env, tmp_path / "worker.log", redis_client, 1):
        # When the folder is submitted and waited for
        out = bulktag(env, "submit", str(folder), "--job", "archive", "--wait")
        status = json.loads(bulktag(env, "status", "archive", "--json"))
        records = {
            Path(r["uri"]).name: r
            for r in map(json.loads, bulktag(env, "results", "archive").splitlines())
        }
        samples = scrape(port)

    # Then the submission says what it left out, and the status counts it
    assert "skipped 2 files that are not images: .mov 1, .txt 1" in out.splitlines()
    assert status["skipped"] == 2
    assert (status["state"], status["total"], status["ok"], status["error"]) == ("done", 6, 5, 1)
    assert set(records) == {
        "photo.png",
        "IMG_0001.HEIC",
        "photo.avif",
        "DSC_0001.DNG",
        "DSC_0002.dng",
        "IMG_0002.heic",
    }

    # ...HEIC and AVIF agree with the same photo as PNG
    png = records["photo.png"]
    for name in ("IMG_0001.HEIC", "photo.avif"):
        rec = records[name]
        assert rec["status"] == "ok", rec
        print(name, [(t["index"], round(t["score"], 4)) for t in rec["top3"]])
        assert rec["top3"][0]["index"] == png["top3"][0]["index"]
        assert all(
            abs(a["score"] - b["score"]) < 2e-3
            for a, b in zip(rec["top3"], png["top3"], strict=True)
        )
    print("photo.png", [(t["index"], round(t["score"], 4)) for t in png["top3"]])
    # ...and the HEIC record is exactly the reference pipeline's on the same file
    register_openers()  # the reference opens it with Pillow + pillow-heif
    model = load_reference_model(dev_weights)
    indices, scores = reference_top3(model, folder / "IMG_0001.HEIC")
    assert [t["index"] for t in records["IMG_0001.HEIC"]["top3"]] == indices
    assert all(
        abs(t["score"] - s) <= 1e-4
        for t, s in zip(records["IMG_0001.HEIC"]["top3"], scores, strict=True)
    )

    # ...both DNGs are tagged, one from its preview and one by demosaic
    assert records["DSC_0001.DNG"]["status"] == records["DSC_0002.dng"]["status"] == "ok"
    assert value(samples, "bulktag_raw_decodes_total", path="preview") == 1
    assert value(samples, "bulktag_raw_decodes_total", path="demosaic") == 1

    # ...and the truncated HEIC is an error with its reason, never a skip
    broken = records["IMG_0002.heic"]
    assert broken["status"] == "error"
    assert "truncated" in broken["error"] or "HEIF" in broken["error"], broken["error"]

    # ...and the RAW files get their XMP sidecars like any photo (DSC_0001.DNG.xmp beside
    # DSC_0001.DNG, the name digiKam and darktable use), which exiftool reads back
    bulktag(env, "sidecars", "archive")
    for name in ("DSC_0001.DNG", "DSC_0002.dng"):
        sidecar = folder / f"{name}.xmp"
        tags = read_back(sidecar)
        labels = [t["label"] for t in records[name]["top3"]]
        assert as_list(tags["XMP-dc:Subject"]) == labels
        assert as_list(tags["XMP-lr:HierarchicalSubject"]) == [f"bulktag|{x}" for x in labels]
