"""Recognising HEIC, AVIF and camera RAW by name and content, and the skip report."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from producer.selection import Selection, looks_like_image, normalise_extensions
from producer.sources import iter_source
from tasks.formats import is_raw, kind_by_name, sniff
from tests.format_fixtures import avif_bytes, dng_bytes, heic_bytes, jpeg_bytes, photo


@pytest.fixture(scope="module")
def small() -> Image.Image:
    return photo("coffee", (96, 64))


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\0\0\0\0" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body + b"\0" * 32


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("IMG_0001.HEIC", "heif"),
        ("a.heif", "heif"),
        ("b.Avif", "avif"),
        ("c.CR2", "raw"),
        ("c.cr3", "raw"),
        ("d.NEF", "raw"),
        ("e.arw", "raw"),
        ("f.RAF", "raw"),
        ("g.orf", "raw"),
        ("h.RW2", "raw"),
        ("i.pef", "raw"),
        ("j.DNG", "raw"),
        ("k.JPG", "pillow"),
        ("l.tiff", "pillow"),
        ("clip.mov", None),
        ("photo.CR2.xmp", None),
        ("notes.txt", None),
        ("noext", None),
    ],
)
def test_extensions_are_recognised_in_any_case(name: str, kind: str | None) -> None:
    assert kind_by_name(name) == kind


@pytest.mark.parametrize(
    ("head", "kind"),
    [
        (ftyp(b"heic", b"mif1", b"heic"), "heif"),
        (ftyp(b"heix", b"mif1"), "heif"),
        (ftyp(b"mif1", b"mif1", b"heic"), "heif"),
        (ftyp(b"msf1", b"msf1", b"hevc"), "heif"),
        (ftyp(b"hevc", b"msf1"), "heif"),
        (ftyp(b"avif", b"mif1", b"miaf"), "avif"),
        (ftyp(b"avis", b"msf1", b"avif"), "avif"),
        (ftyp(b"mif1", b"mif1", b"avif"), "avif"),  # generic brand, AVIF compatible
        (ftyp(b"crx ", b"crx "), "raw"),  # Canon CR3
        (ftyp(b"qt  ", b"qt  "), None),  # QuickTime .mov
        (ftyp(b"isom", b"isom", b"mp41"), None),  # MP4 video
        (b"FUJIFILMCCD-RAW 0201FF383501", "raw"),
        (b"IIRO\x08\0\0\0", "raw"),  # ORF
        (b"IIU\0\x08\0\0\0", "raw"),  # RW2
        (b"II*\0\x08\0\0\0", "tiff"),
        (b"\xff\xd8\xff\xe0", "jpeg"),
        (b"RIFF\0\0\0\0WEBPVP8 ", "webp"),
        (b"hello, world", None),
    ],
)
def test_content_sniffing(head: bytes, kind: str | None) -> None:
    assert sniff(head) == kind


def test_real_heic_and_avif_are_sniffed(small: Image.Image) -> None:
    assert sniff(heic_bytes(small)[:64]) == "heif"
    assert sniff(avif_bytes(small)[:64]) == "avif"


def tiff_bytes(*pages: Image.Image, **first_page: object) -> bytes:
    import tifffile

    out = io.BytesIO()
    with tifffile.TiffWriter(out) as tif:
        for i, page in enumerate(pages):
            tif.write(np.asarray(page), **(first_page if i == 0 else {}))
    return out.getvalue()


def test_a_tiff_magic_number_alone_does_not_make_a_raw_file(small: Image.Image) -> None:
    # Given ordinary TIFFs: Pillow's, a multi-page one, one whose first page is full size
    pil = io.BytesIO()
    small.save(pil, "TIFF")
    plain = [pil.getvalue(), tiff_bytes(small, small), tiff_bytes(small, subfiletype=0)]
    # Then none is RAW (they stay with Pillow's TIFF reader)
    assert [is_raw(data) for data in plain] == [False, False, False]


def test_tiff_structured_raw_files_are_recognised(small: Image.Image) -> None:
    # DNG without and with a preview (DNGVersion; CFA sensor data in IFD0 or a SubIFD)
    assert is_raw(dng_bytes(small))
    assert is_raw(dng_bytes(small, preview=small))
    # NEF/ARW/PEF layout: a reduced-resolution first IFD, the image in a SubIFD
    nef_like = tiff_bytes(small.resize((16, 12)), small, subfiletype=1, subifds=1)
    assert is_raw(nef_like)
    # CR2: the "CR" marker after the TIFF header
    assert is_raw(b"II*\0\x10\0\0\0CR\x02\0" + b"\0" * 64)
    # non-TIFF RAW formats by magic; a JPEG and garbage are not RAW
    assert is_raw(ftyp(b"crx ", b"crx "))
    assert not is_raw(jpeg_bytes(small))
    assert not is_raw(b"II*\0\xff\xff\xff\xff")  # IFD offset past the end: not a RAW


def test_include_ext_values_are_normalised() -> None:
    assert normalise_extensions(["MOV", ".xmp", "dat, .Bin", ""]) == {
        ".mov",
        ".xmp",
        ".dat",
        ".bin",
    }


def test_walk_takes_every_photo_kind_and_counts_what_it_skips(
    tmp_path: Path, small: Image.Image
) -> None:
    # Given an archive folder as a phone or camera leaves it
    files = {
        "IMG_0001.HEIC": heic_bytes(small),
        "photo.avif": avif_bytes(small),
        "DSC_0002.DNG": dng_bytes(small),
        "scan.jpg": jpeg_bytes(small),
        "renamed_heic": heic_bytes(small),  # no extension: found by content
        "clip.mov": ftyp(b"qt  ", b"qt  "),
        "clip2.MOV": ftyp(b"qt  ", b"qt  "),
        "DSC_0002.DNG.xmp": b"<x:xmpmeta/>",
        "notes.txt": b"holiday 2024",
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    # When it is walked
    selection = Selection()
    taken = {Path(uri).name for uri in iter_source(str(tmp_path), selection=selection)}
    # Then every image is taken and every other file is counted by extension
    assert taken == {"IMG_0001.HEIC", "photo.avif", "DSC_0002.DNG", "scan.jpg", "renamed_heic"}
    assert selection.skipped == {".mov": 2, ".xmp": 1, ".txt": 1}
    assert selection.summary() == "skipped 4 files that are not images: .mov 2, .txt 1, .xmp 1"

    # And --include-ext forces a kind in (it then becomes an error record if not an image)
    forced = Selection(["MOV"])
    taken = {Path(uri).name for uri in iter_source(str(tmp_path), selection=forced)}
    assert {"clip.mov", "clip2.MOV"} <= taken
    assert forced.skipped == {".xmp": 1, ".txt": 1}


def test_summary_line_groups_thousands_and_caps_the_kinds() -> None:
    selection = Selection()
    for ext, count in ((".mov", 1190), (".xmp", 10), (".txt", 3)):
        for _ in range(count):
            selection.skip(f"f{ext}")
    assert selection.summary() == (
        "skipped 1,203 files that are not images: .mov 1,190, .xmp 10, .txt 3"
    )
    one = Selection()
    one.skip("README")
    assert one.summary() == "skipped 1 file that is not an image: (no extension) 1"
    many = Selection()
    for i in range(12):
        many.skip(f"f.x{i:02d}")
    summary = many.summary() or ""
    assert summary.endswith(", 4 other kinds 4") and summary.count(".x") == 8
    assert Selection().summary() is None


def test_looks_like_image_reads_content_only_for_unknown_extensions(
    tmp_path: Path, small: Image.Image
) -> None:
    avif = tmp_path / "photo.bin"
    avif.write_bytes(avif_bytes(small))
    mov = tmp_path / "clip.mov"
    mov.write_bytes(ftyp(b"qt  ", b"qt  "))
    assert looks_like_image(avif)
    assert not looks_like_image(mov)
    assert looks_like_image(mov, frozenset({".mov"}))
