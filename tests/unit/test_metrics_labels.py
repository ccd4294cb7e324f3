"""Metric labels stay a small fixed set whatever text a job's URIs carry."""

from __future__ import annotations

import pytest

from tasks import instruments as metrics
from tasks.errors import UnsupportedUri
from tasks.fetch import FETCHERS


def scheme_labels() -> set[str]:
    """Every ``scheme`` label value the fetch histogram has a series for."""
    return {
        sample.labels["scheme"]
        for family in metrics.FETCH_SECONDS.collect()
        for sample in family.samples
        if "scheme" in sample.labels
    }


@pytest.mark.parametrize(
    ("uri", "label"),
    [
        ("/data/photos/a.jpg", "file"),
        ("relative/a.jpg", "file"),
        ("file:///data/a.jpg", "file"),
        ("S3://bucket/key.jpg", "s3"),
        ("http://example.org/a.jpg", "http"),
        ("HTTPS://example.org/a.jpg", "https"),
        ("gopher://example.org/a.jpg", "other"),
        ("x-9f3c1e://anything", "other"),
        ('evil"}\n://a', "other"),
    ],
)
def test_fetch_scheme_label_is_a_known_scheme_or_other(uri: str, label: str) -> None:
    assert metrics.fetch_scheme_label(uri) == label


def test_made_up_schemes_add_no_time_series() -> None:
    # Given a fetch that refuses what it cannot handle, wrapped with the histogram
    def fetch(uri: str, settings: object) -> bytes:
        if uri.startswith("/"):
            return b"bytes"
        raise UnsupportedUri(uri)

    timed = metrics.timed_fetch(fetch)
    # When a job's URIs use a thousand different made-up schemes (and one good path)
    assert timed("/data/a.jpg", None) == b"bytes"
    for n in range(1000):
        with pytest.raises(UnsupportedUri):
            timed(f"made-up-{n}://host/a.jpg", None)
    # Then every one was observed under "other", and no label is outside the known set
    labels = scheme_labels()
    assert {"file", "other"} <= labels
    assert labels <= ({s for s in FETCHERS if s} | {"other"})
    other = next(
        s.value
        for family in metrics.FETCH_SECONDS.collect()
        for s in family.samples
        if s.name.endswith("_count") and s.labels.get("scheme") == "other"
    )
    assert other >= 1000
