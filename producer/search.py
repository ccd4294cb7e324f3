"""Find records by label: resolve label names to class indices, then ask the store.

A label is one of a model's category names (case-insensitive, exact) or its class
index. Names come from what workers published for their checkpoint
(``tasks.model_labels``), so resolving them needs neither torch nor the weights file;
before any worker ran, the local checkpoint (``BULKTAG_WEIGHTS``) is read instead.

Records of several models may share a store, and a custom fine-tuned model numbers its
classes its own way: index 3 is "receipt" in one and "hammerhead" in another. A match
therefore also needs the record's own label name to be one of the names asked for.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from tasks.errors import ConfigError
from tasks.model_labels import ModelLabels, base_model_id
from tasks.model_registry import ModelRegistry
from tasks.records import Record
from tasks.settings import Settings
from tasks.store import ResultStore

FIRST_PAGE = 100  # store rows read by the first page of a streamed search
MAX_PAGE = 20_000  # ... doubling up to this many per page
SUGGESTIONS = 3  # closest names offered for an unknown label
_SUGGEST_CUTOFF = 0.6


@dataclass(frozen=True)
class LabelSet:
    """A model's category names (index i = class i) and the model id they belong to."""

    model: str
    categories: list[str]


@dataclass(frozen=True)
class Query:
    """Resolved labels: the class indices and the lower-cased names they stand for."""

    indices: list[int]
    names: frozenset[str]


def model_labels(store: ResultStore, settings: Settings, model: str | None = None) -> LabelSet:
    """The labels of ``model`` (default: the current model, see ``tasks.model_registry``).

    Raises:
        ConfigError: no worker published labels for that model and the local checkpoint
            is another model (or missing).
    """
    wanted = model or ModelRegistry(store.r).current()
    if wanted is not None:
        categories = ModelLabels(store.r).get(wanted)
        if categories is not None:
            return LabelSet(wanted, categories)
    local = _local_checkpoint_labels(settings)
    if local is not None and (wanted is None or base_model_id(wanted) == local.model):
        return local
    what = f"model {wanted}" if wanted else "any model"
    raise ConfigError(
        f"no labels known for {what}: start a worker with its checkpoint (it publishes "
        "them), or point BULKTAG_WEIGHTS at it"
    )


def _local_checkpoint_labels(settings: Settings) -> LabelSet | None:
    """The categories of the checkpoint at ``BULKTAG_WEIGHTS`` (verified), if it exists."""
    if not settings.weights.is_file():
        return None
    from weights.checkpoint import load_checkpoint

    ckpt = load_checkpoint(settings.weights, settings.weights_sha256)
    return LabelSet(ckpt.model_id, ckpt.categories)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def _shares_word(a: str, b: str) -> bool:
    """Whether two names share a word or a word's stem ("cats" ~ "cat")."""
    return any(
        x == y or (min(len(x), len(y)) >= 3 and (x.startswith(y) or y.startswith(x)))
        for x in _words(a)
        for y in _words(b)
    )


def closest_names(name: str, categories: Sequence[str], n: int = SUGGESTIONS) -> list[str]:
    """Up to ``n`` category names close to ``name``: difflib's ratio, plus a bonus for a
    shared word, so "tabby cats" suggests "tabby" and the "... cat" classes."""
    low = name.lower()
    scored = []
    for cat in dict.fromkeys(categories):  # ImageNet repeats a few names
        score = difflib.SequenceMatcher(None, low, cat.lower()).ratio()
        score += 0.3 if _shares_word(low, cat) else 0.0
        if score >= _SUGGEST_CUTOFF:
            scored.append((-score, cat))
    return [cat for _, cat in sorted(scored)[:n]]


def resolve_labels(labels: Sequence[str], labelset: LabelSet) -> Query:
    """Class indices for label names (case-insensitive, exact) or class numbers.

    A name some models use twice (ImageNet's "crane", "maillot") stands for every
    class of that name.

    Raises:
        ConfigError: an unknown name (with the closest names) or an index out of range.
    """
    cats = labelset.categories
    by_name: dict[str, list[int]] = {}
    for i, cat in enumerate(cats):
        by_name.setdefault(cat.lower(), []).append(i)
    indices: list[int] = []
    for label in labels:
        text = label.strip()
        if text.isdigit():
            index = int(text)
            if index >= len(cats):
                raise ConfigError(
                    f"label index {index} is out of range: model {labelset.model} has "
                    f"{len(cats)} labels (0-{len(cats) - 1})"
                )
            indices.append(index)
        elif text.lower() in by_name:
            indices += by_name[text.lower()]
        else:
            near = closest_names(text, cats)
            hint = (
                "did you mean " + ", ".join(f'"{c}"' for c in near) + "?"
                if near
                else "`bulktag labels` lists them"
            )
            raise ConfigError(f'unknown label "{text}"; {hint}')
    unique = list(dict.fromkeys(indices))
    return Query(unique, frozenset(cats[i].lower() for i in unique))


def matches(record: Record, query: Query, min_score: float, top1: bool) -> bool:
    """Whether the record itself names one of the query's labels at ``min_score``.

    The store matched the class index; this also checks the label's name, which tells
    apart models that number their classes differently.
    """
    top = (record.top3 or [])[: 1 if top1 else None]
    return any(
        t.index in query.indices and t.score >= min_score and t.label.lower() in query.names
        for t in top
    )


def search_hits(
    store: ResultStore,
    query: Query,
    *,
    min_score: float = 0.0,
    top1: bool = False,
    job_id: str | None = None,
    model_id: str | None = None,
    limit: int | None = None,
) -> Iterator[dict[str, Any]]:
    """Matching records newest first, streamed: ``{"job", "index", **record}``.

    The store is read in pages (``offset``/``limit``) that double from
    ``FIRST_PAGE`` up to ``MAX_PAGE`` rows: a store may materialise a page, so memory
    stays bounded, and the first lines of ``| head`` come after one small query.
    """
    sent = offset = 0
    page = FIRST_PAGE
    while True:
        rows = list(
            store.search(
                query.indices,
                min_score=min_score,
                top1=top1,
                job_id=job_id,
                model_id=model_id,
                limit=page,
                offset=offset,
            )
        )
        for job, index, record in rows:
            if not matches(record, query, min_score, top1):
                continue
            yield {"job": job, "index": index, **record.to_dict()}
            sent += 1
            if limit is not None and sent >= limit:
                return
        if len(rows) < page:
            return
        offset += len(rows)
        page = min(MAX_PAGE, page * 2)
