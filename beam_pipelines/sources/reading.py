"""Reading a shard on a worker: rows with stable example ids, or problems for bad records."""
from __future__ import annotations

import gzip
import zlib
from typing import Iterator, Mapping

from flanforge.beam_pipelines.sources.base import RawRow, ReadProblem, SourceRow, SourceShard, example_id, rows_of
from flanforge.beam_pipelines.sources.kinds import KINDS
from flanforge.schemas.files import first_line


def _problem(shard: SourceShard, raw: RawRow) -> ReadProblem:
    where = raw.where or (f"at {raw.position}" if raw.position >= 0 else "")
    name = shard.id_prefix or shard.location
    return ReadProblem(shard.task, shard.split, f"{name} {where}".strip(), raw.error, raw.text)


def _until_damage(shard: SourceShard, rows: Iterator[RawRow]) -> Iterator[RawRow]:
    """A reader's rows up to where its file is damaged (a truncated or corrupt gzip stream), then
    one problem that says so: what was read stays, the rest is reported, nothing crashes."""
    last = -1
    try:
        for raw in rows:
            last = raw.position
            yield raw
    except (EOFError, zlib.error, gzip.BadGzipFile) as e:
        after = f"after record at {last}" if last >= 0 else "before its first record"
        yield RawRow(last + 1, None, f"damaged file, rest not read: {type(e).__name__}: {first_line(e, 200)}", f"{after}")


def read_shard(shard: SourceShard) -> Iterator[SourceRow | ReadProblem]:
    """Rows of one shard in read order; unreadable records come out as ReadProblems (dead letters)."""
    ordinal = 0
    task, split, key = shard.task, shard.split, shard.key
    for raw in rows_of(shard, _until_damage(shard, KINDS[shard.kind].read(shard))):
        if raw.row is None:
            yield _problem(shard, raw)
            continue
        yield SourceRow(task, split, example_id(shard, raw.row, raw.position, raw.element), key, ordinal, raw.row, raw.position)
        ordinal += 1


def read_rows_at(shard: SourceShard, wanted: Mapping[int, int]) -> Iterator[SourceRow]:
    """The rows at these positions (position -> ordinal, both from an earlier `read_shard`).

    Kinds that can seek (plain JSONL) parse only the rows they keep, so a second pass over a
    shard costs what it keeps; others are read again and filtered. An exploded row's elements
    share a position; they come back in order with their own ordinals."""
    read_at = KINDS[shard.kind].read_at
    if read_at is None or shard.options.explode:
        for item in read_shard(shard):
            if isinstance(item, SourceRow) and item.position in wanted:
                yield item
        return
    for raw in read_at(shard, wanted):
        if raw.row is not None:
            yield SourceRow(shard.task, shard.split, example_id(shard, raw.row, raw.position), shard.key, wanted[raw.position], raw.row, raw.position)
