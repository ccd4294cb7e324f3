"""Write a job's records as JSON Lines or CSV."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable
from typing import Any, TextIO

CSV_FIELDS = ["uri", "status", "error", "sha256", "model"] + [
    f"{k}{n}" for n in (1, 2, 3) for k in ("label", "index", "score")
]


def write_jsonl(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    n = 0
    for rec in records:
        out.write(json.dumps(rec, ensure_ascii=False) + "\n")
        n += 1
    return n


def flatten(rec: dict[str, Any]) -> dict[str, Any]:
    row = {k: rec.get(k) for k in ("uri", "status", "error", "sha256", "model")}
    for n, top in enumerate(rec.get("top3") or [], start=1):
        row[f"label{n}"] = top["label"]
        row[f"index{n}"] = top["index"]
        row[f"score{n}"] = f"{top['score']:.6f}"
    return row


def write_csv(records: Iterable[dict[str, Any]], out: TextIO) -> int:
    writer = csv.DictWriter(out, fieldnames=CSV_FIELDS)
    writer.writeheader()
    n = 0
    for rec in records:
        writer.writerow(flatten(rec))
        n += 1
    return n
