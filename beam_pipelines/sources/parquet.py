"""Parquet files: one read shard per row group, planned from the footer alone."""
from __future__ import annotations

from dataclasses import replace
from typing import Iterator

from flanforge.beam_pipelines.sources.base import RawRow, SourceShard
from flanforge.beam_pipelines.sources.files import open_source


def row_counts(path: str) -> list[int]:
    """Rows in each row group, from the file's footer only."""
    import pyarrow.parquet as pq

    with open_source(path) as f:
        meta = pq.ParquetFile(f).metadata
        return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


def row_group_shards(whole: SourceShard, counts: list[int], first_row: int) -> list[SourceShard]:
    """One shard per non-empty row group; start/end number the rows from first_row on."""
    shards, row = [], first_row
    for group, n in enumerate(counts):
        if n:
            shards.append(replace(whole, kind="parquet", start=row, end=row + n, row_group=group))
        row += n
    return shards


def plan_file(whole: SourceShard) -> list[SourceShard]:
    return row_group_shards(whole, row_counts(whole.location), 0)


def read(shard: SourceShard) -> Iterator[RawRow]:
    import pyarrow.parquet as pq

    with open_source(shard.location) as f:
        rows = pq.ParquetFile(f).read_row_group(shard.row_group).to_pylist()
    for i, row in enumerate(rows, start=shard.start):
        yield RawRow(i, row, "", f"row {i}")
