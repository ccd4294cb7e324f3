"""Local reads stay inside the operator's allowed roots: ``..`` and symlinks cannot escape."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tasks.errors import NotAllowed, NotFound, TooLarge, UnsupportedUri
from tasks.fetch import fetch_bytes, fetch_local
from tasks.settings import Settings


@pytest.fixture
def layout(tmp_path: Path) -> tuple[Path, Path, Settings]:
    """An allowed root holding ``ok.jpg``, and a secret file outside it."""
    root = tmp_path / "photos"
    root.mkdir()
    (root / "ok.jpg").write_bytes(b"inside")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.pem").write_bytes(b"private")
    return root, outside, Settings(allowed_roots=(root,))


def test_a_file_inside_the_root_is_read(layout: tuple[Path, Path, Settings]) -> None:
    root, _, settings = layout
    assert fetch_local(str(root / "ok.jpg"), settings) == b"inside"
    assert fetch_bytes(f"file://{root / 'ok.jpg'}", settings) == b"inside"


@pytest.mark.parametrize("form", ["path", "file-uri"])
def test_dotdot_escape_is_refused(layout: tuple[Path, Path, Settings], form: str) -> None:
    root, outside, settings = layout
    escape = f"{root}/../{outside.name}/key.pem"
    uri = escape if form == "path" else f"file://{escape}"
    with pytest.raises(NotAllowed, match="outside the allowed roots"):
        fetch_bytes(uri, settings)


def test_symlinked_file_pointing_outside_is_refused(layout: tuple[Path, Path, Settings]) -> None:
    root, outside, settings = layout
    (root / "innocent.jpg").symlink_to(outside / "key.pem")
    with pytest.raises(NotAllowed, match=r"resolves to .*key\.pem, outside the allowed roots"):
        fetch_local(str(root / "innocent.jpg"), settings)


def test_symlinked_directory_pointing_outside_is_refused(
    layout: tuple[Path, Path, Settings],
) -> None:
    root, outside, settings = layout
    (root / "album").symlink_to(outside, target_is_directory=True)
    with pytest.raises(NotAllowed, match="outside the allowed roots"):
        fetch_local(str(root / "album" / "key.pem"), settings)


def test_symlink_within_the_root_is_followed(layout: tuple[Path, Path, Settings]) -> None:
    root, _, settings = layout
    (root / "alias.jpg").symlink_to(root / "ok.jpg")
    assert fetch_local(str(root / "alias.jpg"), settings) == b"inside"


def test_a_sibling_with_the_root_as_name_prefix_is_outside(tmp_path: Path) -> None:
    # /x/photos must not admit /x/photos-private: containment is by path parts, not text.
    root = tmp_path / "photos"
    root.mkdir()
    sibling = tmp_path / "photos-private"
    sibling.mkdir()
    (sibling / "a.jpg").write_bytes(b"x")
    with pytest.raises(NotAllowed):
        fetch_local(str(sibling / "a.jpg"), Settings(allowed_roots=(root,)))


def test_relative_paths_and_remote_file_hosts_are_refused(
    layout: tuple[Path, Path, Settings],
) -> None:
    _, _, settings = layout
    with pytest.raises(NotAllowed, match="relative path"):
        fetch_local("photos/ok.jpg", settings)
    with pytest.raises(UnsupportedUri, match="remote host"):
        fetch_bytes("file://fileserver/share/a.jpg", settings)


def test_symlink_loop_missing_and_oversized_files_fail_clearly(
    layout: tuple[Path, Path, Settings],
) -> None:
    root, _, settings = layout
    (root / "loop.jpg").symlink_to(root / "loop.jpg")
    with pytest.raises(NotAllowed, match="cannot resolve"):
        fetch_local(str(root / "loop.jpg"), settings)
    with pytest.raises(NotFound, match="no such file"):
        fetch_local(str(root / "gone.jpg"), settings)
    with pytest.raises(TooLarge, match="over the 3-byte limit"):
        fetch_local(str(root / "ok.jpg"), Settings(allowed_roots=(root,), max_bytes=3))


def test_a_fifo_or_directory_in_the_root_is_refused_without_hanging(
    layout: tuple[Path, Path, Settings],
) -> None:
    # A FIFO opened for reading blocks until a writer comes: the open is non-blocking.
    root, _, settings = layout
    os.mkfifo(root / "pipe.jpg")
    (root / "album.jpg").mkdir()
    for name in ("pipe.jpg", "album.jpg"):
        with pytest.raises(NotFound, match="not a regular file"):
            fetch_local(str(root / name), settings)


def test_roots_and_paths_reached_through_symlinks_are_judged_by_real_path(
    tmp_path: Path, layout: tuple[Path, Path, Settings]
) -> None:
    root, outside, _ = layout
    root_link = tmp_path / "photos-link"
    root_link.symlink_to(root, target_is_directory=True)
    via_link = Settings(allowed_roots=(root_link,))
    assert fetch_local(str(root / "ok.jpg"), via_link) == b"inside"
    assert fetch_local(str(root_link / "ok.jpg"), via_link) == b"inside"
    assert fetch_local(f"{outside}/../photos/ok.jpg", via_link) == b"inside"
    with pytest.raises(NotAllowed, match="outside the allowed roots"):
        fetch_local(str(root_link / ".." / "secret" / "key.pem"), via_link)


def test_a_path_outside_the_roots_is_never_opened(
    layout: tuple[Path, Path, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, outside, settings = layout
    opened: list[str] = []
    real_open = os.open

    def spy(path: Any, *args: Any, **kwargs: Any) -> int:
        opened.append(str(path))
        return int(real_open(path, *args, **kwargs))

    monkeypatch.setattr(os, "open", spy)
    for uri in (str(outside / "key.pem"), f"{root}/../secret/key.pem"):
        with pytest.raises(NotAllowed):
            fetch_local(uri, settings)
    assert not any("key.pem" in p for p in opened)
    assert fetch_local(str(root / "ok.jpg"), settings) == b"inside"
    assert opened == [str(root / "ok.jpg")]


def test_the_opened_file_not_a_prior_check_decides(
    layout: tuple[Path, Path, Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    # A symlink swapped in after any path check and before the open must not leak the
    # file it points to: simulate the swap by replacing the file at open time.
    root, outside, settings = layout
    real_open = os.open

    def swap_then_open(path: Any, *args: Any, **kwargs: Any) -> int:
        target = Path(path)
        if target.name == "ok.jpg":
            target.unlink()
            target.symlink_to(outside / "key.pem")
        return int(real_open(path, *args, **kwargs))

    monkeypatch.setattr(os, "open", swap_then_open)
    with pytest.raises(NotAllowed, match=r"resolves to .*key\.pem"):
        fetch_local(str(root / "ok.jpg"), settings)
