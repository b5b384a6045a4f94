"""What every source kind shares: the read shard, the row, the problem, how to read the bytes.

A `SourceShard` is planned on the launcher and travels to a worker, so it carries everything the
read needs (kind, location, row range, `ReadOptions`); a reader turns it into `RawRow`s. Nothing
here imports Beam.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator, NamedTuple

from flanforge.beam_pipelines.catalog import ReadOptions

# Rows per shard for row-addressable sources (hub datasets, save_to_disk directories).
ROWS_PER_SHARD = 50_000
# How much of a bad line a dead letter quotes.
MAX_QUOTED_CHARS = 300


class SourceError(ValueError):
    """A source cannot be read at all (missing, empty, unknown format); raised before the pipeline runs."""


def source_error(task: str, split: str, message: str) -> SourceError:
    return SourceError(f"task {task} split {split}: {message}")


@dataclass(frozen=True)
class SourceShard:
    task: str
    split: str  # the output split the rows go to
    kind: str  # a key of sources.kinds.KINDS
    location: str  # file path/URL, HF dataset path or save_to_disk directory, or "" for samples
    start: int  # byte offset (jsonl); first row (parquet: of the file, or of the HF split; hf, hf_disk, samples)
    end: int  # exclusive; -1 = to the end
    id_field: str | None = None
    id_prefix: str = ""  # the file's path relative to its glob root: keeps ids machine-independent
    row_group: int = -1  # parquet: the row group holding rows [start, end)
    hf_name: str | None = None
    hf_split: str | None = None  # the split inside the dataset (hf, hf_disk): not the output split
    data_files: Any = None
    hf_revision: str | None = None
    hf_data_dir: str | None = None
    inline_rows: tuple[dict[str, Any], ...] = ()  # kind "samples": the spec's own rows travel with the shard
    file_bytes: int = 0  # size of the file behind a file shard: sizes the render and the output at plan time
    parts: tuple[tuple[str, str], ...] = ()  # kind "aligned": (field, file) read line by line in step
    options: ReadOptions = ReadOptions()

    @property
    def key(self) -> str:
        """Identity of the shard, stable across runs (used to seed round-robin offsets)."""
        return f"{self.split}:{self.id_prefix or self.location}:{self.start}"


class SourceRow(NamedTuple):
    """One row of a source, as a reader hands it on (a NamedTuple: one is made per row, cheaply)."""

    task: str
    split: str
    example_id: str
    shard_key: str
    ordinal: int  # position within the shard, in read order
    row: dict[str, Any]
    position: int = -1  # where the row is in its file: byte offset (JSONL), line or row number


@dataclass(frozen=True)
class ReadProblem:
    task: str
    split: str
    where: str  # file and line (or byte offset, said as such)
    error: str
    text: str = ""  # the offending line, truncated


class RawRow(NamedTuple):
    """What a reader yields: a row, or (row None) a record it could not read and why."""

    position: int  # byte offset, line or row number: what `where` reports, and what read_rows_at seeks
    row: dict[str, Any] | None
    error: str = ""
    where: str = ""  # how to say the position ("line 12", "byte 4096"); default "at <position>"
    text: str = ""  # the raw text of a bad record
    element: int = -1  # an exploded row: which element of the list field it holds


def quote(text: str | bytes) -> str:
    """A bad record's text for a dead letter, truncated."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="backslashreplace")
    text = text.rstrip("\r\n")
    return text if len(text) <= MAX_QUOTED_CHARS else text[:MAX_QUOTED_CHARS] + "…"


def example_id(shard: SourceShard, row: dict[str, Any], position: int, element: int = -1) -> str:
    """`split:<id field>` when the row has one, else `split:<file relative to its root>:<position>`;
    an exploded row adds `#<element>`."""
    base = f"{shard.split}:{row[shard.id_field]}" if shard.id_field and shard.id_field in row else f"{shard.split}:{shard.id_prefix}:{position}"
    return base if element < 0 else f"{base}#{element}"


def rows_of(shard: SourceShard, rows: Iterator[RawRow]) -> Iterator[RawRow]:
    """A reader's rows with the shard's `explode` option applied (one row per list element, or the first)."""
    field = shard.options.explode
    if not field:
        yield from rows
        return
    first_only = shard.options.explode_keep == "first"
    for raw in rows:
        if raw.row is None:
            yield raw
            continue
        values = raw.row.get(field)
        if not isinstance(values, (list, tuple)) or not values:
            got = "an empty list" if isinstance(values, (list, tuple)) else type(values).__name__
            yield raw._replace(row=None, error=f"field {field!r} to explode must be a non-empty list, got {got}")
            continue
        if first_only:
            yield raw._replace(row={**raw.row, field: values[0]})
            continue
        for i, value in enumerate(values):
            yield raw._replace(row={**raw.row, field: value}, element=i)
