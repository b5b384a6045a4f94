"""The table of source kinds: how each is planned and read.

A new kind is one module with a `read` function (and a planner) and one entry here. File kinds
plan one file at a time (`plan_file`, given the whole file as a shard) and are found by
extension; the others plan a whole split of a source from its spec (`plan_split`).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.sources import aligned, delimited, hub, jsonl, niv2, parquet, samples, tfrecord
from flanforge.beam_pipelines.sources.base import RawRow, SourceError, SourceShard


@dataclass(frozen=True)
class SourceKind:
    read: Callable[[SourceShard], Iterator[RawRow]] | None = None  # None: plans shards of another kind
    plan_file: Callable[[SourceShard], list[SourceShard]] | None = None  # file kinds
    plan_split: Callable[[TaskSpec, str], list[SourceShard]] | None = None  # kinds planned from the spec
    extensions: tuple[str, ...] = ()
    gzip_ok: bool = False  # a `.gz` file of this kind is read through gzip
    # The rows at chosen positions (position -> ordinal); kinds without one are read again and filtered.
    read_at: Callable[[SourceShard, Mapping[int, int]], Iterator[RawRow]] | None = None
    # Checks that the files of one source agree (one call per path or glob, with a shard per file).
    check_files: Callable[[list[SourceShard]], None] | None = None
    # Files given to a task whose spec has this kind are read as this kind whatever their extension
    # (an NIv2 task file is `.json` but not JSON Lines).
    claims_spec_files: bool = False
    # Every file is a task of its own, named from the file's path (an NIv2 task file holds one
    # task): the build makes one task per file of the spec (sources.tasks_per_file).
    file_task: Callable[[str], str] | None = None
    # That task's metadata for the manifest (TaskEntry.metadata), read from its file on a worker.
    file_metadata: Callable[[str], dict[str, Any]] | None = None


KINDS: dict[str, SourceKind] = {
    "jsonl": SourceKind(jsonl.read, jsonl.plan_file, extensions=(".jsonl", ".json"), gzip_ok=True, read_at=jsonl.read_at),
    "csv": SourceKind(delimited.read, delimited.plan_file, extensions=(".csv",), gzip_ok=True, check_files=delimited.check_headers),
    "tsv": SourceKind(delimited.read, delimited.plan_file, extensions=(".tsv",), gzip_ok=True, check_files=delimited.check_headers),
    "parquet": SourceKind(parquet.read, parquet.plan_file, extensions=(".parquet",)),
    "tfrecord": SourceKind(tfrecord.read, tfrecord.plan_file, extensions=(".tfrecord",)),
    "tfds": SourceKind(plan_split=tfrecord.plan_tfds),  # shards of kind tfrecord
    "hf": SourceKind(hub.read, plan_split=hub.plan_hub),
    "hf_disk": SourceKind(hub.read, plan_split=hub.plan_disk),
    "aligned": SourceKind(aligned.read, plan_split=aligned.plan),
    "niv2": SourceKind(niv2.read, niv2.plan_file, claims_spec_files=True, file_task=niv2.task_name, file_metadata=niv2.task_file_metadata),
    "samples": SourceKind(samples.read, plan_split=samples.plan),
}
FILE_KINDS = sorted(k for k, kind in KINDS.items() if kind.plan_file)

# TFDS and Beam name sharded TFRecord files `<name>.tfrecord-00000-of-00004`.
_SHARDED_TFRECORD = re.compile(r"\.tfrecord-\d+-of-\d+$")
_BY_EXTENSION = {ext: name for name, kind in KINDS.items() for ext in kind.extensions}


def kind_for_path(path: str, fallback: str | None = None) -> str:
    """The file kind a path's name implies (`.gz` is looked through for the text formats); else
    `fallback` (the spec's own file kind), else an error that says how to name the format."""
    name = path.rstrip("/")
    if _SHARDED_TFRECORD.search(name):
        return "tfrecord"
    gz = name.endswith(".gz")
    _, ext = os.path.splitext(name[: -len(".gz")] if gz else name)
    kind = _BY_EXTENSION.get(ext.lower()) or fallback
    if kind is None or (gz and not KINDS[kind].gzip_ok):
        raise SourceError(
            f"{path}: cannot tell the format from the extension; use one of {', '.join(sorted(_BY_EXTENSION))} "
            f"(or .tfrecord-NNNNN-of-NNNNN), a save_to_disk directory, or say it: --source TASK=PATH#format=tsv"
        )
    return kind
