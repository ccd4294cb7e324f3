"""`bulktag sidecars`: XMP sidecars read back by a real reader, exiftool.

Needs Debian's libimage-exiftool-perl (the Makefile's set-up installs it); a missing
exiftool fails the test under CI=true instead of skipping it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from PIL import Image

from producer.cli import main
from tasks.store import ResultStore
from tests.labelled_jobs import MODEL, error, ok, seed_job

EXISTING_SIDECAR = """<?xml version="1.0" encoding="UTF-8"?>
<x:xmpmeta xmlns:x="adobe:ns:meta/" x:xmptk="XMP Core 4.4.0-Exiv2">
 <rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">
  <rdf:Description rdf:about=""
    xmlns:xmp="http://ns.adobe.com/xap/1.0/"
    xmlns:dc="http://purl.org/dc/elements/1.1/"
    xmlns:lr="http://ns.adobe.com/lightroom/1.0/"
    xmlns:darktable="http://darktable.sf.net/"
    xmp:Rating="4"
    darktable:xmp_version="5">
   <dc:subject><rdf:Bag><rdf:li>holiday</rdf:li><rdf:li>beach</rdf:li></rdf:Bag></dc:subject>
   <lr:hierarchicalSubject><rdf:Bag><rdf:li>places|beach</rdf:li></rdf:Bag></lr:hierarchicalSubject>
   <darktable:history><rdf:Seq>
    <rdf:li darktable:operation="exposure" darktable:enabled="1" darktable:params="0000"/>
   </rdf:Seq></darktable:history>
  </rdf:Description>
 </rdf:RDF>
</x:xmpmeta>
"""


def exiftool() -> str:
    path = shutil.which("exiftool")
    if path is None:
        message = "exiftool not installed (apt-get install libimage-exiftool-perl)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def read_back(sidecar: Path) -> dict[str, Any]:
    """What exiftool reads from a sidecar (-struct keeps lists as lists)."""
    out = subprocess.run(
        [exiftool(), "-j", "-G1", "-struct", "-XMP:all", str(sidecar)],
        capture_output=True,
        text=True,
        check=True,
    )
    data: dict[str, Any] = json.loads(out.stdout)[0]
    return data


def as_list(value: Any) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


@pytest.fixture
def photos(tmp_path: Path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("cat.jpg", "beach.jpg", "dull.jpg", "broken.jpg"):
        Image.new("RGB", (8, 8), (200, 100, 50)).save(folder / name)
    return folder


def seed(redis_url: str, photos: Path, job: str = "trip") -> None:
    store = ResultStore(redis.Redis.from_url(redis_url, decode_responses=True))
    seed_job(
        store,
        job,
        [
            ok(str(photos / "cat.jpg"), ("tabby", 281, 0.62), ("tiger cat", 282, 0.21)),
            ok(str(photos / "beach.jpg"), ("seashore", 978, 0.7), ("sandbar", 977, 0.2)),
            ok(str(photos / "dull.jpg"), ("web site", 916, 0.05), ("menu", 922, 0.04)),
            error(str(photos / "broken.jpg")),
            ok("s3://bucket/albums/2024/boat.jpg", ("speedboat", 814, 0.9)),
        ],
    )


def test_sidecars_merge_into_existing_and_rerun_adds_nothing(
    redis_url: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a job over local photos and one S3 object; beach.jpg already has a sidecar
    # with keywords, a hierarchical keyword, a rating and darktable's edit history
    seed(redis_url, photos)
    (photos / "beach.jpg.xmp").write_text(EXISTING_SIDECAR)
    images_before = {p.name: p.read_bytes() for p in photos.glob("*.jpg")}
    out = tmp_path / "sidecars-out"

    # When sidecars are written with a minimum score
    args = ["--redis-url", redis_url, "sidecars", "trip", "--min-score", "0.15", "--out", str(out)]
    assert main(args) == 0
    summary = capsys.readouterr().out
    assert "3 written" in summary and "1 with no label" in summary and "1 records not ok" in summary

    # Then exiftool reads the labels as Subject and HierarchicalSubject beside each photo
    cat = read_back(photos / "cat.jpg.xmp")
    assert as_list(cat["XMP-dc:Subject"]) == ["tabby", "tiger cat"]
    assert as_list(cat["XMP-lr:HierarchicalSubject"]) == ["bulktag|tabby", "bulktag|tiger cat"]
    assert cat["XMP-bulktag:Model"] == MODEL
    assert [float(s) for s in cat["XMP-bulktag:Scores"]] == [0.62, 0.21]
    # ...the existing sidecar keeps its keywords, rating and edit history, ours appended
    beach = read_back(photos / "beach.jpg.xmp")
    assert as_list(beach["XMP-dc:Subject"]) == ["holiday", "beach", "seashore", "sandbar"]
    assert as_list(beach["XMP-lr:HierarchicalSubject"]) == [
        "places|beach",
        "bulktag|seashore",
        "bulktag|sandbar",
    ]
    assert beach["XMP-xmp:Rating"] == 4
    assert beach["XMP-darktable:Xmp_version"] == 5
    assert beach["XMP-darktable:History"] == [
        {"Enabled": 1, "Operation": "exposure", "Params": "0000"}
    ]
    # ...no sidecar for a record under the minimum score or an error
    assert not (photos / "dull.jpg.xmp").exists()
    assert not (photos / "broken.jpg.xmp").exists()
    # ...the S3 object's sidecar mirrors its URI under --out
    boat = read_back(out / "bucket" / "albums" / "2024" / "boat.jpg.xmp")
    assert as_list(boat["XMP-dc:Subject"]) == ["speedboat"]
    # ...and no image was touched
    assert {p.name: p.read_bytes() for p in photos.glob("*.jpg")} == images_before

    # When it runs again
    before = {p: p.read_bytes() for p in [*photos.glob("*.xmp"), *out.rglob("*.xmp")]}
    mtimes = {p: p.stat().st_mtime_ns for p in before}
    assert main(args) == 0
    # Then nothing changes: no keyword added twice, no file rewritten
    assert "0 written, 3 unchanged" in capsys.readouterr().out
    assert {p: p.read_bytes() for p in before} == before
    assert {p: p.stat().st_mtime_ns for p in before} == mtimes


def test_remote_sources_without_out_are_one_error_and_dry_run_writes_nothing(
    redis_url: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(redis_url, photos)
    # A dry run says what it would write and writes nothing
    x = tmp_path / "x"
    assert main(["--redis-url", redis_url, "sidecars", "trip", "--dry-run", "--out", str(x)]) == 0
    out = capsys.readouterr().out
    assert f"would write {photos / 'cat.jpg.xmp'}: tabby, tiger cat\n" in out
    assert f"would write {x}/bucket/albums/2024/boat.jpg.xmp: speedboat" in out
    assert not list(photos.glob("*.xmp")) and not x.exists()
    # Without --out the S3 record has nowhere to go: local ones are written, exit 1
    assert main(["--redis-url", redis_url, "sidecars", "trip"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "bulktag: error: 1 sidecars have nowhere to go (S3/HTTP sources or read-only "
        "folders, e.g. s3://bucket/albums/2024/boat.jpg): pass --out DIR"
    ]
    assert (photos / "cat.jpg.xmp").exists()


@pytest.fixture
def read_only(photos: Path) -> Iterator[Path]:
    """``photos`` made unwritable: chmod for a normal user, chattr +i for root."""
    if os.geteuid() != 0:
        photos.chmod(0o555)
        yield photos
        photos.chmod(0o755)
        return
    done = subprocess.run(["chattr", "+i", str(photos)], capture_output=True, text=True)
    if done.returncode != 0:
        message = f"cannot make a read-only folder as root: {done.stderr.strip()}"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    try:
        yield photos
    finally:
        subprocess.run(["chattr", "-i", str(photos)], check=True)


def test_read_only_folder_gets_its_sidecars_under_out(
    redis_url: str, read_only: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(redis_url, read_only)
    out = tmp_path / "elsewhere"
    assert main(["--redis-url", redis_url, "sidecars", "trip", "--out", str(out)]) == 0
    assert not list(read_only.glob("*.xmp"))
    mirrored = out.joinpath(*read_only.parts[1:]) / "cat.jpg.xmp"
    assert as_list(read_back(mirrored)["XMP-dc:Subject"]) == ["tabby", "tiger cat"]
    assert "4 written" in capsys.readouterr().out


def test_a_sidecar_that_is_not_xmp_is_left_alone_with_a_warning(
    redis_url: str, photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seed(redis_url, photos)
    (photos / "cat.jpg.xmp").write_text("not xml at all <")
    out = str(tmp_path / "out")
    assert main(["--redis-url", redis_url, "sidecars", "trip", "--out", out]) == 1
    assert (photos / "cat.jpg.xmp").read_text() == "not xml at all <"
    err = capsys.readouterr().err
    assert f"bulktag: warning: {photos / 'cat.jpg'}: sidecar is not well-formed XML" in err
