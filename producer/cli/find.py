"""``bulktag search LABEL ...`` and ``bulktag labels``: find photos by their tags."""

from __future__ import annotations

import argparse
import csv
import json
import sys
from typing import Any

from producer.cli.common import positive_int, settings_for
from producer.cli.sidecars import score_fraction
from producer.export import CSV_FIELDS, flatten
from tasks.settings import Settings

SEARCH_CSV_FIELDS = ["job", "index", *CSV_FIELDS]


def _store_and_settings(args: argparse.Namespace) -> tuple[Any, Settings]:
    from tasks.store import ResultStore, connect

    settings = settings_for(args)
    return ResultStore(connect(settings.redis_url)), settings


def cmd_search(args: argparse.Namespace) -> int:
    from producer.search import model_labels, resolve_labels, search_hits

    store, settings = _store_and_settings(args)
    if args.job is not None:
        store.status(args.job)  # JobNotFound: one line, not an empty result
    query = resolve_labels(args.labels, model_labels(store, settings, args.model))
    hits = search_hits(
        store,
        query,
        min_score=args.min_score,
        top1=args.top1,
        job_id=args.job,
        model_id=args.model,
        limit=args.limit,
    )
    out = sys.stdout
    if args.format == "paths":
        for hit in hits:
            out.write(hit["uri"] + "\n")
    elif args.format == "csv":
        writer = csv.DictWriter(out, fieldnames=SEARCH_CSV_FIELDS)
        writer.writeheader()
        for hit in hits:
            writer.writerow({"job": hit["job"], "index": hit["index"], **flatten(hit)})
    else:
        for hit in hits:
            out.write(json.dumps(hit, ensure_ascii=False) + "\n")
    return 0


def cmd_labels(args: argparse.Namespace) -> int:
    from producer.search import model_labels
    from tasks.model_labels import ModelLabels
    from tasks.model_registry import ModelRegistry

    store, settings = _store_and_settings(args)
    labelset = model_labels(store, settings, args.model)
    cats = labelset.categories
    if not args.counts:
        print(f"model {labelset.model}: {len(cats)} labels", file=sys.stderr)
        for i, cat in enumerate(cats):
            print(f"{i}\t{cat}")
        return 0
    # Class indices mean the same across models only when their labels are the same:
    # count every model's records then, else only this model's.
    models = [m for m, _ in ModelRegistry(store.r).known()]
    same = all(ModelLabels(store.r).get(m) in (None, cats) for m in models)
    scope = args.model or (None if same else labelset.model)
    counts = store.label_counts(model_id=scope)
    print(
        f"model {labelset.model}: records holding each label in their top-3 "
        f"({'records of ' + scope if scope else 'all models'})",
        file=sys.stderr,
    )
    for i in sorted(range(len(cats)), key=lambda i: (-counts.get(i, 0), i)):
        print(f"{counts.get(i, 0)}\t{i}\t{cats[i]}")
    return 0


def add_commands(sub: Any) -> None:
    """Register ``bulktag search`` and ``bulktag labels`` on the ``bulktag`` subparsers."""
    p = sub.add_parser("search", help="records whose top-3 holds any of the labels, newest first")
    p.add_argument("labels", nargs="+", metavar="LABEL", help="category name or class index")
    p.add_argument("--job", help="only this job (default: across all jobs)")
    p.add_argument(
        "--min-score", type=score_fraction, default=0.0, metavar="S", help="score at least S (0-1)"
    )
    p.add_argument("--top1", action="store_true", help="match the top-1 label only")
    p.add_argument("--model", metavar="ID", help="only records by this model id (and its labels)")
    p.add_argument(
        "--format",
        choices=["jsonl", "csv", "paths"],
        default="jsonl",
        help="jsonl (default), csv, or paths: one URI per line (for xargs)",
    )
    p.add_argument("--limit", type=positive_int, metavar="N", help="at most N records")
    p.set_defaults(func=cmd_search)

    p = sub.add_parser("labels", help="the model's labels; --counts: how many records hold each")
    p.add_argument("--model", metavar="ID", help="model id (default: the current model)")
    p.add_argument("--counts", action="store_true", help="records holding each label, most first")
    p.set_defaults(func=cmd_labels)
