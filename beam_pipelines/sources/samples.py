"""The rows embedded in a spec (`samples`), standing in for every split in --demo builds."""
from __future__ import annotations

from typing import Iterator

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.sources.base import RawRow, SourceShard


def plan(spec: TaskSpec, split: str) -> list[SourceShard]:
    return [
        SourceShard(
            task=spec.name, split=split, kind="samples", location="", start=0, end=len(spec.samples),
            id_field=spec.source.id_field, id_prefix="sample", inline_rows=tuple(spec.samples), options=spec.source.read,
        )
    ]


def read(shard: SourceShard) -> Iterator[RawRow]:
    for i, row in enumerate(shard.inline_rows):
        yield RawRow(i, dict(row), "", f"sample {i}")
