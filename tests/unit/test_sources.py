"""Sources stream URIs: folders by extension and content, @lists, stdin, remote URIs."""

from __future__ import annotations

import errno
import io
import itertools
import os
from pathlib import Path
from typing import Any

import pytest

from producer.sources import iter_source, iter_sources
from producer.submit import chunked, growing
from tasks.errors import ConfigError

JPEG_MAGIC = b"\xff\xd8\xff\xe0" + b"\0" * 16


def test_folder_walk_finds_images_by_extension_and_content(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "x.JPG").write_bytes(b"anything")
    (tmp_path / "b.png").write_bytes(b"anything")
    (tmp_path / "no_extension").write_bytes(JPEG_MAGIC)
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "data.bin").write_bytes(b"\0" * 32)
    found = list(iter_source(str(tmp_path)))
    assert found == [
        str(tmp_path / "b.png"),
        str(tmp_path / "no_extension"),
        str(tmp_path / "a" / "x.JPG"),
    ]


def test_list_file_and_stdin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    listing = tmp_path / "uris.txt"
    listing.write_text("# comment\nrel.jpg\n\ns3://b/k.jpg\nhttps://e.org/a.png\n")
    assert list(iter_source(f"@{listing}")) == [
        str(tmp_path / "rel.jpg"),
        "s3://b/k.jpg",
        "https://e.org/a.png",
    ]
    stdin = io.StringIO("/abs/one.jpg\nfile:///abs/two.jpg\n")
    assert list(iter_sources(["-"], stdin=stdin)) == ["/abs/one.jpg", "file:///abs/two.jpg"]


def test_missing_sources_raise_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file or directory"):
        list(iter_source(str(tmp_path / "nope")))
    with pytest.raises(ConfigError, match="list file not found"):
        list(iter_source(f"@{tmp_path / 'nope.txt'}"))


def unreadable_tree(tmp_path: Path) -> Path:
    """``root/a.jpg`` and ``root/locked/b.jpg``, the folder ``locked`` mode 000."""
    root = tmp_path / "root"
    (root / "locked").mkdir(parents=True)
    (root / "a.jpg").write_bytes(JPEG_MAGIC)
    (root / "locked" / "b.jpg").write_bytes(JPEG_MAGIC)
    (root / "locked").chmod(0)
    return root


@pytest.mark.skipif(
    hasattr(os, "geteuid") and os.geteuid() == 0, reason="root reads a mode-000 folder"
)
def test_an_unreadable_folder_fails_the_walk(tmp_path: Path) -> None:
    # Given a folder the producer may not list
    root = unreadable_tree(tmp_path)
    try:
        # Then walking it raises and names the folder instead of skipping its images
        with pytest.raises(ConfigError, match=f"cannot read folder {root / 'locked'}: "):
            list(iter_source(str(root)))
    finally:
        (root / "locked").chmod(0o755)


def test_a_listing_error_fails_the_walk_even_as_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a folder whose listing fails (root ignores mode 000, so the OS error that
    # os.walk reports through its onerror hook is raised here by os.scandir itself)
    root = unreadable_tree(tmp_path)
    locked = root / "locked"
    real_scandir = os.scandir

    def scandir(path: Any) -> Any:
        if Path(path) == locked:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(locked))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    try:
        # Then the walk stops with the folder and the reason, not a silent skip
        with pytest.raises(ConfigError, match=f"cannot read folder {locked}: Permission denied"):
            list(iter_source(str(root)))
    finally:
        locked.chmod(0o755)


def test_chunking_streams_without_materialising() -> None:
    def endless():
        n = 0
        while True:
            yield str(n)
            n += 1

    chunks = chunked(endless(), 3)
    assert next(chunks) == ["0", "1", "2"]
    assert next(chunks) == ["3", "4", "5"]
    assert list(chunked(iter(["a", "b", "c", "d"]), 3)) == [["a", "b", "c"], ["d"]]


def test_publish_batches_start_at_one_chunk_and_double_to_the_limit() -> None:
    # The first chunk reaches the workers as soon as it exists; later ones in bulk.
    sizes = [len(b) for b in growing(iter(range(100)), 16)]
    assert sizes == [1, 2, 4, 8, 16, 16, 16, 16, 16, 5]
    assert next(growing(itertools.count(), 16)) == [0]  # streams: never materialises


def test_a_non_utf8_file_name_becomes_a_percent_encoded_file_uri(tmp_path: Path) -> None:
    from tasks.fetch import local_path

    # Given a folder with a Latin-1 name beside ordinary ones
    folder = tmp_path / "photos"
    folder.mkdir()
    raw = os.path.join(os.fsencode(folder), b"caf\xe9.jpg")
    with open(raw, "wb") as fh:
        fh.write(JPEG_MAGIC)
    (folder / "b.jpg").write_bytes(JPEG_MAGIC)
    # When it is walked, then nothing is lost: the odd name is a pure-ASCII file:// URI...
    found = list(iter_source(str(folder)))
    odd = "file://" + os.fsencode(folder).decode() + "/caf%E9.jpg"
    assert found == [str(folder / "b.jpg"), odd]
    assert all(uri.encode("utf-8") for uri in found)
    # ...that names exactly the same bytes on disk
    assert os.fsencode(local_path(odd)) == raw
    assert local_path(odd).read_bytes() == JPEG_MAGIC
    # And named directly, the file gets the same URI
    assert list(iter_source(os.fsdecode(raw))) == [odd]


def test_a_list_file_with_non_utf8_lines(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_bytes(b"# caf\xe9 photos\n/p/ok.jpg\n/p/caf\xe9.jpg\n\nhttps://e.org/x.png\n")
    # A local path line that is not UTF-8 names real bytes: it becomes a file:// URI
    assert list(iter_source(f"@{listing}")) == [
        "/p/ok.jpg",
        "file:///p/caf%E9.jpg",
        "https://e.org/x.png",
    ]
    # A remote URI line that is not UTF-8 is a one-line error naming file and line
    bad = tmp_path / "remote.txt"
    bad.write_bytes(b"https://e.org/a.png\n\nhttps://e.org/caf\xe9.png\nhttps://e.org/b.png\n")
    stream = iter_source(f"@{bad}")
    assert next(stream) == "https://e.org/a.png"
    with pytest.raises(ConfigError) as exc:
        next(stream)
    assert str(exc.value) == (
        f"{bad} line 3: not valid UTF-8 (byte 0xe9 at column 18); "
        "save the list as UTF-8 or percent-encode the URI"
    )
    # And stdin is read as bytes the same way
    stdin = io.BytesIO(b"/p/caf\xe9.jpg\n")
    assert list(iter_sources(["-"], stdin=stdin)) == ["file:///p/caf%E9.jpg"]  # type: ignore[arg-type]
