"""A built corpus, reviewed a page at a time: its manifest's counts and the records of one task.

Only what the manifest lists is read (a reader should trust nothing else, docs/ARCHITECTURE.md),
through schemas/: the manifest reader and the file layer, so a gs:// corpus reads as a local one.
Records come from the Parquet shards, or the JSONL ones when a corpus was built without Parquet.
"""
from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flanforge.schemas.files import open_filesystem, open_input
from flanforge.schemas.manifest import Manifest, ManifestError, read_manifest
from flanforge.schemas.records import arrow_schema

READABLE_FORMATS = ("parquet", "jsonl")
MAX_PAGE_RECORDS = 100
CONFIG_SHOWN = ("recipe", "tasks", "clusters", "template_mode", "seed", "max_examples_per_task", "options_variants", "few_shot", "formats", "holdout_clusters")


def _format(manifest: Manifest) -> str:
    for fmt in READABLE_FORMATS:
        if manifest.shards_for(fmt=fmt):
            return fmt
    raise ManifestError(f"{manifest.root} has no Parquet or JSONL shards (built with --formats tfrecord?): the studio reads one of those")


def corpus_summary(root: str) -> dict[str, Any]:
    """The manifest's per-task counts, collection and rate, the splits written, and the build's settings."""
    manifest = read_manifest(root)
    return {
        "root": manifest.root,
        "flanforge_version": manifest.flanforge_version,
        "format": _format(manifest),
        "config": {k: manifest.config[k] for k in CONFIG_SHOWN if k in manifest.config},
        "splits": sorted({s.split for s in manifest.shards}),
        "tasks": [
            {"name": name, "cluster": e.cluster, "collection": e.collection, "rate": e.rate, "templates": e.templates, "counts": e.counts,
             "written_by_split": e.written_by_split}
            for name, e in sorted(manifest.tasks.items())
        ],
    }


def _read_shard(manifest: Manifest, fmt: str, path: str, task: str) -> pa.Table:
    uri = manifest.uri(path)
    if fmt == "parquet":
        fs, local = open_filesystem(uri)
        return pq.read_table(local, filesystem=fs, filters=[("task", "=", task)], schema=arrow_schema())
    with open_input(uri) as f:
        rows = [r for r in (json.loads(line) for line in f if line.strip()) if r["task"] == task]
    return pa.Table.from_pylist(rows, schema=arrow_schema())


def corpus_records(root: str, task: str, *, split: str | None = None, template: str | None = None, offset: int = 0, limit: int = 20) -> dict[str, Any]:
    """A page of one task's records (optionally of one split and template), with the number of
    records per template in that split."""
    manifest = read_manifest(root)
    entry = manifest.tasks.get(task)
    if entry is None:
        raise ManifestError(f"{manifest.root}: the manifest has no task {task!r}")
    fmt = _format(manifest)
    shards = manifest.shards_for(fmt=fmt, splits=[split] if split else None, clusters=[entry.cluster])
    table = pa.concat_tables([_read_shard(manifest, fmt, s.path, task) for s in shards]) if shards else arrow_schema().empty_table()
    per_template = {str(v["values"]): int(v["counts"]) for v in pc.value_counts(table["template_id"]).to_pylist()} if len(table) else {}
    if template:
        table = table.filter(pc.equal(table["template_id"], template))
    offset, limit = max(0, int(offset)), max(1, min(int(limit), MAX_PAGE_RECORDS))
    return {
        "task": task,
        "split": split,
        "template": template,
        "total": len(table),
        "offset": offset,
        "per_template": dict(sorted(per_template.items())),
        "records": table.slice(offset, limit).to_pylist(),
    }
