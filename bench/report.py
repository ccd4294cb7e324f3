"""Agreement with the reference, the machine's description and docs/BENCHMARKS.md.

The benchmark owns only the sections between its own markers in docs/BENCHMARKS.md;
everything else in that file (other engineers' sections) is kept as it is.
"""

from __future__ import annotations

import os
import platform
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

TopK = dict[str, tuple[list[int], list[float]]]


@dataclass
class Agreement:
    """How often a mode's top-3 matches the fp32 reference on the same images."""

    images: int
    top1: float  # same best label
    top3: float  # same set of three labels
    max_score_diff: float  # largest |score - reference score|, same-rank pairs

    def __str__(self) -> str:
        return f"{self.top1:.3f} / {self.top3:.3f}"


def agreement(reference: TopK, got: TopK, uris: Iterable[str]) -> Agreement:
    """Compare ``got`` with ``reference`` on ``uris`` (both map uri -> indices, scores)."""
    uris = list(uris)
    top1 = top3 = 0
    worst = 0.0
    for uri in uris:
        ref_idx, ref_scores = reference[uri]
        idx, scores = got[uri]
        top1 += idx[0] == ref_idx[0]
        top3 += set(idx) == set(ref_idx)
        worst = max(worst, *(abs(a - b) for a, b in zip(scores, ref_scores, strict=True)))
    n = max(1, len(uris))
    return Agreement(len(uris), top1 / n, top3 / n, worst)


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    import PIL
    import torch
    import torchvision

    model = "unknown CPU"
    flags: set[str] = set()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    matmul = [f for f in ("avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni") if f in flags]
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return {
        "cpu": f"{model}, {len(os.sched_getaffinity(0))} cores usable "
        f"({', '.join(matmul) or 'no bf16/AMX flags'})",
        "memory": f"{mem_gb:.0f} GiB",
        "software": f"Python {platform.python_version()}, torch {torch.__version__}, "
        f"torchvision {torchvision.__version__}, Pillow {PIL.__version__}, "
        f"{platform.system()} {platform.release()}",
    }


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def write_section(path: Path, name: str, body: str, title: str = "# Benchmarks") -> None:
    """Replace (or append) the section between ``<!-- bench:NAME -->`` markers."""
    start, end = f"<!-- bench:{name} -->", f"<!-- /bench:{name} -->"
    block = f"{start}\n{body.strip()}\n{end}"
    text = path.read_text(encoding="utf-8") if path.exists() else f"{title}\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if pattern.search(text):
        text = pattern.sub(lambda _: block, text)
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)
