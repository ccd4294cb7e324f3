"""What the API lets a remote client enumerate: local sources only under the allowed roots."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.api.policy import check_source, check_uris
from tasks.errors import ConfigError, NotAllowed
from tasks.settings import Settings


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "photos").mkdir(parents=True)
    (tmp_path / "root" / "photos" / "a.jpg").write_bytes(b"\xff\xd8\xff")
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "list.txt").write_text("/etc/passwd\n")
    return tmp_path / "root"


def test_sources_inside_the_roots_and_remote_ones_pass(root: Path) -> None:
    settings = Settings(allowed_roots=(root,))
    for source in (
        str(root / "photos"),
        f"file://{root}/photos/a.jpg",
        "s3://bucket/prefix/",
        "https://example.com/x.jpg",
    ):
        check_source(source, settings)
    check_uris([str(root / "photos" / "a.jpg"), "s3://b/k.jpg", "http://h/x.png"], settings)


def test_escapes_by_dots_symlinks_and_list_files_are_refused(root: Path) -> None:
    settings = Settings(allowed_roots=(root,))
    (root / "link").symlink_to(root.parent / "outside")
    for source in (
        str(root / ".." / "outside"),
        str(root / "link"),
        f"@{root.parent / 'outside' / 'list.txt'}",
        f"@{root / 'link' / 'list.txt'}",
        "/etc",
    ):
        with pytest.raises(NotAllowed):
            check_source(source, settings)
    with pytest.raises(NotAllowed):
        check_uris([str(root / "link" / "list.txt")], settings)


def test_meaningless_or_unknown_inputs_are_bad_requests(root: Path) -> None:
    settings = Settings(allowed_roots=(root,))
    for source in ("-", "photos", "ftp://host/x", "file://otherhost/x.jpg"):
        with pytest.raises(ConfigError):
            check_source(source, settings)
    for uri in ("", "-", "@list.txt", "a.jpg", "gopher://x", str(root / "missing.jpg")):
        with pytest.raises(ConfigError):
            check_uris([uri], settings)
