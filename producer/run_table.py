"""The table ``bulktag run`` (and ``make demo``) prints: the first records' top-3 at a glance."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from rich.console import Console

from producer.sources import local_roots


def show_table(records: list[dict[str, Any]], console: Console, root: Path | None) -> None:
    """Records as a table: image, status, then the top-3 labels with their scores."""
    from rich.table import Table

    table = Table(title="bulktag: top-3 labels per image")
    table.add_column("image")
    table.add_column("status")
    for n in (1, 2, 3):
        table.add_column(f"#{n} label (score)")
    for rec in records:
        name = rec["uri"]
        if root is not None:
            with contextlib.suppress(ValueError):
                name = str(Path(rec["uri"]).relative_to(root))
        if rec["status"] == "ok":
            cells = [f"{t['label']} ({t['score']:.3f})" for t in rec["top3"]]
            table.add_row(name, "[green]ok", *cells)
        else:
            table.add_row(name, "[red]error", (rec.get("error") or "")[:60], "", "")
    console.print(table)
    if records and records[0].get("model"):
        console.print(f"model id: {records[0]['model']}")


def common_root(sources: list[str]) -> Path | None:
    """The one local folder the sources name, to shorten the table's paths."""
    roots = local_roots(sources)
    return roots[0] if len(roots) == 1 and roots[0].is_dir() else None
