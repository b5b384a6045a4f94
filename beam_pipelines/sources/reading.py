"""Reading a shard on a worker: rows with stable example ids, or problems for bad records."""
from __future__ import annotations

from typing import Iterator, Mapping

from flanforge.beam_pipelines.sources.base import RawRow, ReadProblem, SourceRow, SourceShard, example_id, rows_of
from flanforge.beam_pipelines.sources.kinds import KINDS


def _problem(shard: SourceShard, raw: RawRow) -> ReadProblem:
    where = raw.where or (f"at {raw.position}" if raw.position >= 0 else "")
    name = shard.id_prefix or shard.location
    return ReadProblem(shard.task, shard.split, f"{name} {where}".strip(), raw.error, raw.text)


def read_shard(shard: SourceShard) -> Iterator[SourceRow | ReadProblem]:
    """Rows of one shard in read order; unreadable records come out as ReadProblems (dead letters)."""
    ordinal = 0
    task, split, key = shard.task, shard.split, shard.key
    for raw in rows_of(shard, KINDS[shard.kind].read(shard)):
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
