"""`flanforge stats DIR`: gather, write the HTML report, print a compact summary.

The report goes to DIR/report.html unless --output says otherwise. A local path is written
directly; a gs:// one (DIR on Cloud Storage, or --output there) through the build's own write
layer, beam_pipelines/storage.py, imported only then, so that inspecting a local corpus needs no
Beam. The report sits beside the corpus without being part of it: a rebuild into DIR leaves it
(publishing deletes only files a manifest listed), so run stats again after a rebuild.
"""
from __future__ import annotations

import argparse
import os
from typing import Any, Mapping, TextIO

from flanforge.beam_pipelines.stats.gather import CorpusStats, gather
from flanforge.beam_pipelines.stats.page import number, rate_text, render_page
from flanforge.schemas.files import is_remote, join_path

REPORT_NAME = "report.html"
DEFAULT_SAMPLE_ROWS = 50_000
DEFAULT_EXAMPLES = 3
TOP_TASKS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("dir", metavar="DIR", help="a built corpus: the folder (or gs:// prefix) with manifest.json")
    parser.add_argument("--output", metavar="FILE", help=f"where the HTML report goes (default: DIR/{REPORT_NAME}); local or gs://")
    parser.add_argument(
        "--sample-rows", type=int, default=DEFAULT_SAMPLE_ROWS, metavar="N",
        help=f"measure text lengths on about N records, a fixed sample (default: {DEFAULT_SAMPLE_ROWS:,})",
    )
    parser.add_argument("--examples", type=int, default=DEFAULT_EXAMPLES, metavar="K", help=f"example records per task (default: {DEFAULT_EXAMPLES})")


def write_report(path: str, html: str) -> None:
    data = html.encode("utf-8")
    if is_remote(path):
        from flanforge.beam_pipelines.storage import write_bytes

        write_bytes(path, data)
        return
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def table_lines(headings: tuple[str, ...], rows: list[tuple[object, ...]], *, text_columns: int) -> list[str]:
    """A plain text table: the first `text_columns` left-aligned, the figures after them right-aligned."""
    cells = [headings] + [tuple(f"{v:,}" if isinstance(v, int) else str(v) for v in row) for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headings))]
    return ["  ".join(c.ljust(w) if i < text_columns else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths))).rstrip() for row in cells]


COLLECTION_COLUMNS = ("weight", "rate", "tasks", "train", "written")


def collection_figure(summary: Any, key: str) -> object:
    """One figure of a collection's summary: weights and rates as rate_text, a missing one (no recipe weight) as -."""
    value = summary.get(key) if isinstance(summary, Mapping) else None
    if isinstance(value, float):
        return rate_text(value)
    return "-" if value is None else value


def collection_lines(collections: Mapping[str, Any]) -> list[str]:
    """One line per collection, highest rate first: the recipe's weight, the rate that came of it,
    its tasks, and its train and written records."""
    names = sorted(collections, key=lambda name: (-number(collections[name].get("rate") if isinstance(collections[name], Mapping) else None), name))
    return table_lines(
        ("collection", *COLLECTION_COLUMNS),
        [(name, *(collection_figure(collections[name], key) for key in COLLECTION_COLUMNS)) for name in names],
        text_columns=1,
    )


def summary_lines(stats: CorpusStats, report: str) -> list[str]:
    m = stats.manifest
    total = stats.totals.get("written", 0)
    held = set(m.holdout_clusters)
    lines = [f"{m.root}: {len(m.tasks):,} tasks in {len(m.clusters):,} clusters, {total:,} records written (flanforge {m.flanforge_version})"]
    clusters = sorted(stats.by_cluster, key=lambda c: (-stats.by_cluster[c].get("written", 0), c))
    lines += table_lines(
        ("cluster", "tasks", "written", "share"),
        [(c + (" (held out)" if c in held else ""), len(m.clusters[c]), stats.by_cluster[c].get("written", 0),
          f"{stats.by_cluster[c].get('written', 0) / total:.1%}" if total else "-") for c in clusters],
        text_columns=1,
    )
    if len(m.collections) > 1:
        lines += collection_lines(m.collections)
    tasks = sorted(m.tasks, key=lambda t: (-m.tasks[t].counts.get("written", 0), t))
    lines.append(f"top tasks by records written ({min(TOP_TASKS, len(tasks))} of {len(tasks):,}):")
    collections = bool(m.collections)  # a manifest older than collections has no collection, no rate
    lines += table_lines(
        ("task", "cluster", *(("collection",) if collections else ()), "written", "mixing weight", *(("rate",) if collections else ())),
        [
            (t, e.cluster, *((e.collection,) if collections else ()), e.counts.get("written", 0), e.mixing_weight,
             *((rate_text(e.rate),) if collections else ()))
            for t, e in ((t, m.tasks[t]) for t in tasks[:TOP_TASKS])
        ],
        text_columns=3 if collections else 2,
    )
    lines.append("totals: " + ", ".join(f"{name} {stats.totals[name]:,}" for name in stats.counters if name in stats.totals))
    if m.dead_letters:
        lines.append(f"dead letters: {sum(d.rows for d in m.dead_letters):,} rows from {len(m.dead_letters):,} task(s) under {m.uri('dead_letters/')}")
    if stats.parquet_rows:
        lines.append(f"lengths measured on {stats.sampled_rows:,} of {stats.parquet_rows:,} Parquet records")
    else:
        lines.append("no Parquet shards: the report has no template counts, lengths or examples")
    lines += [f"warning: {problem}" for problem in stats.problems]
    lines.append(f"report: {report}")
    return lines


def run_stats(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    """0 when the report was written, 2 when DIR is not a readable finished build."""
    try:
        stats = gather(args.dir, sample_rows=args.sample_rows, examples_per_task=args.examples)
        report = args.output or join_path(args.dir, REPORT_NAME)
        write_report(report, render_page(stats))
    except (ValueError, OSError) as e:  # ManifestError and StorageError are ValueErrors
        print(f"flanforge stats: {e}", file=err)
        return 2
    for line in summary_lines(stats, report):
        print(line, file=out)
    return 0
