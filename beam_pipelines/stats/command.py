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
from typing import TextIO

from flanforge.beam_pipelines.stats.gather import CorpusStats, gather
from flanforge.beam_pipelines.stats.page import render_page
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
    tasks = sorted(m.tasks, key=lambda t: (-m.tasks[t].counts.get("written", 0), t))
    lines.append(f"top tasks by records written ({min(TOP_TASKS, len(tasks))} of {len(tasks):,}):")
    lines += table_lines(
        ("task", "cluster", "written", "mixing weight"),
        [(t, m.tasks[t].cluster, m.tasks[t].counts.get("written", 0), m.tasks[t].mixing_weight) for t in tasks[:TOP_TASKS]],
        text_columns=2,
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
