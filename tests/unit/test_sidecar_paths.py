"""Where sidecars go: beside local photos, mirrored under --out for everything else."""

from __future__ import annotations

from pathlib import Path

import pytest

from producer.sidecars import beside_path, mirrored_path, tags_for

OUT = Path("/exports/xmp")


@pytest.mark.parametrize(
    ("uri", "beside", "mirrored"),
    [
        ("/photos/2024/a.jpg", "/photos/2024/a.jpg.xmp", "/exports/xmp/photos/2024/a.jpg.xmp"),
        (
            "file:///photos/my%20trip/b.JPG",
            "/photos/my trip/b.JPG.xmp",
            "/exports/xmp/photos/my trip/b.JPG.xmp",
        ),
        ("s3://bucket/albums/c.png", None, "/exports/xmp/bucket/albums/c.png.xmp"),
        ("https://cdn.example.com/p/d.webp?x=1", None, "/exports/xmp/cdn.example.com/p/d.webp.xmp"),
        # a URI cannot climb out of --out
        (
            "https://evil.example/../../../etc/e.jpg",
            None,
            "/exports/xmp/evil.example/etc/e.jpg.xmp",
        ),
        ("s3://bucket/../../f.jpg", None, "/exports/xmp/bucket/f.jpg.xmp"),
    ],
)
def test_sidecar_locations(uri: str, beside: str | None, mirrored: str) -> None:
    assert beside_path(uri) == (Path(beside) if beside else None)
    assert mirrored_path(uri, OUT) == Path(mirrored)
    assert mirrored_path(uri, OUT).is_relative_to(OUT)


def test_a_uri_without_a_file_name_has_no_mirror() -> None:
    with pytest.raises(ValueError, match="no file name"):
        mirrored_path("s3://bucket", OUT)


def test_tags_keep_labels_at_the_minimum_score_and_every_score() -> None:
    record = {
        "model": "m",
        "top3": [
            {"label": "tabby", "index": 281, "score": 0.6},
            {"label": "tiger cat", "index": 282, "score": 0.3},
            {"label": "lynx", "index": 287, "score": 0.1},
        ],
    }
    tags = tags_for(record, 0.3)
    assert tags is not None and list(tags.keywords) == ["tabby", "tiger cat"]
    assert [label for label, _ in tags.scores] == ["tabby", "tiger cat", "lynx"]
    assert tags_for(record, 0.7) is None
