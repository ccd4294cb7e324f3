"""Upload storage without Redis: sniffing by content, caps, content addresses, pruning."""

from __future__ import annotations

import hashlib
import io
import os
import time
from pathlib import Path

import pytest
from PIL import Image

from producer.api.multipart import client_filename
from producer.upload_store import UploadStore, describe_content, sniff_image
from tasks.settings import Settings
from worker.delivery import delivery_conf
from worker.queues import check_priority, consumed_queues, lane_queue


def encoded(fmt: str) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (8, 8), (1, 2, 3)).save(out, fmt)
    return out.getvalue()


@pytest.mark.parametrize(
    ("fmt", "ext"),
    [
        ("JPEG", "jpg"),
        ("PNG", "png"),
        ("GIF", "gif"),
        ("WEBP", "webp"),
        ("TIFF", "tif"),
        ("BMP", "bmp"),
    ],
)
def test_images_are_recognised_by_their_bytes(fmt: str, ext: str) -> None:
    assert sniff_image(encoded(fmt)[:64]) == ext


def test_phone_and_camera_formats_are_recognised_whatever_their_name() -> None:
    from tests.format_fixtures import avif_bytes, dng_bytes, heic_bytes, photo

    img = photo(size=(64, 48))
    assert sniff_image(heic_bytes(img)[:64]) == "heic"
    assert sniff_image(avif_bytes(img)[:64]) == "avif"
    assert sniff_image(dng_bytes(img)[:64]) == "tif"  # TIFF-structured: workers see RAW
    mp4 = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2"
    assert sniff_image(mp4) is None
    assert describe_content(mp4) == "a video or other ISO media file (MP4/MOV)"


@pytest.mark.parametrize(
    ("head", "what"),
    [
        (b"", "an empty file"),
        (b"hello, this is text", "text"),
        ("caf\u00e9 ".encode() * 12 + "\u00e9".encode()[:1], "text"),  # a character cut
        (b"%PDF-1.7\n", "a PDF document"),
        (b"PK\x03\x04....", "a ZIP archive (or an office document)"),
        (b"<svg xmlns=", "an SVG drawing (vector images are not tagged)"),
        (bytes(range(200, 216)), "unrecognised binary data"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt ", "unrecognised binary data"),
    ],
)
def test_non_images_are_described(head: bytes, what: str) -> None:
    assert sniff_image(head[:64]) is None
    assert describe_content(head[:64]) == what


def receive(store: UploadStore, name: str, data: bytes, cap: int = 1 << 20, step: int = 7):
    sink = store.sink(name, cap)
    for i in range(0, len(data), step):  # arbitrary network chunking
        sink.write(data[i : i + step])
    return store.finish(sink)


def test_an_image_is_stored_once_under_its_sha256(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "up")
    store.prepare()
    data = encoded("PNG")
    first = receive(store, "cat.jpg", data)  # named .jpg, stored as what it is
    digest = hashlib.sha256(data).hexdigest()
    assert first.path == tmp_path / "up" / digest[:2] / f"{digest}.png"
    assert first.path.read_bytes() == data and first.error is None
    assert (first.sha256, first.size) == (digest, len(data))
    assert oct(first.path.stat().st_mode & 0o777) == "0o644"
    os.utime(first.path, (1, 1))
    again = receive(store, "copy.png", data)
    assert again.path == first.path
    assert first.path.stat().st_mtime > 1  # a repeat refreshes its age
    assert list(store.incoming.iterdir()) == []


def test_over_the_cap_and_non_images_are_not_stored(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "up")
    store.prepare()
    big = receive(store, "big.jpg", encoded("JPEG") + b"\0" * 5000, cap=1000)
    assert big.path is None and big.size > 1000
    assert big.error is not None and big.error.startswith(f"file is {big.size} bytes, over")
    text = receive(store, "notes.jpg", b"dear diary\n")
    assert text.path is None
    assert text.error == "not an image: its content is text, whatever its name says"
    assert list(store.incoming.iterdir()) == [] and list(store.root.glob("*/*.*")) == []


def test_prune_by_age_keeps_files_in_use_and_removes_stale_parts(tmp_path: Path) -> None:
    store = UploadStore(tmp_path / "up")
    store.prepare()
    old_used = receive(store, "a.png", encoded("PNG")).path
    old_free = receive(store, "b.jpg", encoded("JPEG")).path
    young = receive(store, "c.gif", encoded("GIF")).path
    assert old_used and old_free and young
    stale_part = store.incoming / "part-crashed"
    stale_part.write_bytes(b"x")
    long_ago = time.time() - 10 * 86400
    for path in (old_used, old_free, stale_part):
        os.utime(path, (long_ago, long_ago))
    report = store.prune(7 * 86400, lambda p: p == old_used)
    assert (report.removed, report.kept) == (2, 2)
    assert old_used.exists() and young.exists()
    assert not old_free.exists() and not stale_part.exists()
    assert report.freed_bytes == len(encoded("JPEG")) + 1


def test_client_file_names_lose_their_path() -> None:
    assert client_filename("C:\\Users\\me\\IMG_1.JPG") == "IMG_1.JPG"
    assert client_filename("../../etc/passwd") == "passwd"
    assert client_filename("") == "unnamed"
    assert len(client_filename("x" * 1000)) == 255


def test_lanes_high_first_and_kombu_keeps_the_order() -> None:
    assert lane_queue("bulktag", "high") == "bulktag.high"
    assert lane_queue("bulktag", "normal") == "bulktag"
    assert consumed_queues("gpu") == ["gpu.high", "gpu"]
    with pytest.raises(Exception, match="priority must be one of normal, high"):
        check_priority("urgent")
    options = delivery_conf(Settings())["broker_transport_options"]
    assert options["queue_order_strategy"] == "priority"
