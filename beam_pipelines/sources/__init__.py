"""Task sources: planned into read shards on the launcher, read shard by shard on workers.

    planning.py   plan_reads: a task's spec (or --source PATH#OPTIONS) -> SourceShards
    kinds.py      the table: kind -> how it is planned and read, extensions
    base.py       SourceShard, SourceRow, ReadProblem, RawRow, example ids, `explode`
    files.py      paths and globs (local, gs://, hf://) through the Beam-free file layer
    jsonl.py  delimited.py (CSV, TSV)  parquet.py  tfrecord.py (and TFDS)  hub.py (datasets)
    aligned.py (one file per field)  samples.py (a spec's own rows)
    reading.py    read_shard / read_rows_at: rows with stable example ids, or ReadProblems

Nothing here imports Apache Beam.
"""
from flanforge.beam_pipelines.catalog import ReadOptions
from flanforge.beam_pipelines.sources.base import ReadProblem, SourceError, SourceRow, SourceShard
from flanforge.beam_pipelines.sources.jsonl import parse_json_line
from flanforge.beam_pipelines.sources.kinds import KINDS, kind_for_path
from flanforge.beam_pipelines.sources.planning import plan_files, plan_reads, split_source_argument, tasks_per_file
from flanforge.beam_pipelines.sources.reading import read_rows_at, read_shard
from flanforge.beam_pipelines.sources.tfrecord import example_to_row

__all__ = [
    "KINDS", "ReadOptions", "ReadProblem", "SourceError", "SourceRow", "SourceShard", "example_to_row", "kind_for_path",
    "parse_json_line", "plan_files", "plan_reads", "read_rows_at", "read_shard", "split_source_argument", "tasks_per_file",
]
