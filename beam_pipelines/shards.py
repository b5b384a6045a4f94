"""WriteShards: spill refs -> <format>/<split>/<cluster>/part-SSSSS-of-NNNNN.{tfrecord,parquet,jsonl}.

The only shuffle of the build groups spill refs (a path and batch numbers, never rows) by their
output shard. A writer reads its shard's batches, keeps one copy of every content hash (the shard
*is* the dedup group within a cluster), drops the copies that a record in another cluster wins and
the capped candidates above their template's threshold, and writes the rows sorted by content hash.
So every file's bytes are the same whatever the runner, worker count or arrival order. Every
expected shard is written, even an empty one, so `-of-NNNNN` is honest. A writer holds one shard,
so memory is bounded by the shard size, not the corpus.
"""
from __future__ import annotations

import io
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flanforge.beam_pipelines.balance import SampleKey
from flanforge.beam_pipelines.counting import COUNTS, CountingDoFn
from flanforge.beam_pipelines.dedup import first_copies
from flanforge.beam_pipelines.layout import Destination, ShardLayout
from flanforge.beam_pipelines.spill import SAMPLE_KEY, SpillRef, read_spilled
from flanforge.beam_pipelines.storage import write_chunks
from flanforge.schemas.files import join_path
from flanforge.schemas.records import FIELD_NAMES, arrow_schema, shard_path
from flanforge.schemas.tfexample import ExampleEncoder


REMOVAL_REASONS = ("near_duplicates", "contaminated")  # in the order the funnel applies them
TFRECORD_CHUNK_ROWS = 8192  # records turned into Python values at a time while writing TFRecord


def encode_parquet(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table.combine_chunks(), buf, compression="zstd")
    return buf.getvalue()


def tfrecord_chunks(table: pa.Table, encoder: ExampleEncoder) -> Iterator[bytes]:
    """A TFRecord file's bytes in pieces, so only a slice of the shard is ever held as Python objects."""
    for batch in table.to_batches(max_chunksize=TFRECORD_CHUNK_ROWS):
        yield encoder.encode_columns({n: batch.column(n).to_pylist() for n in FIELD_NAMES}, batch.num_rows)


def jsonl_chunks(table: pa.Table) -> Iterator[bytes]:
    """A JSON Lines file's bytes in pieces: one object per record, fields in RECORD_FIELDS order."""
    for batch in table.to_batches(max_chunksize=TFRECORD_CHUNK_ROWS):
        yield b"".join(orjson.dumps(row) + b"\n" for row in batch.to_pylist())


def _task_counts(tasks: pa.ChunkedArray | pa.Array) -> dict[str, int]:
    if len(tasks) == 0:
        return {}
    counts = pc.value_counts(tasks.combine_chunks() if isinstance(tasks, pa.ChunkedArray) else tasks)
    return {c["values"].as_py(): c["counts"].as_py() for c in counts}


def lost_to_other_clusters(hashes: list[str], cluster: str, split: str, winners: Mapping[tuple[str, str], str]) -> list[bool]:
    """Per record: is its hash won by a copy in another cluster?"""
    return [winners.get((split, h), cluster) != cluster for h in hashes]


def removed_examples(columns: tuple[list[str], list[str]], split: str, removed: Mapping[tuple[str, str, str], str], counter: str) -> list[bool]:
    """Per record (task, example id): is its example removed for `counter`'s reason?"""
    return [removed.get((split, task, example_id)) == counter for task, example_id in zip(*columns)]


def over_cap(
    columns: tuple[list[str], list[str], list[int], list[str]], split: str, thresholds: Mapping[tuple[str, str, str], SampleKey | None]
) -> list[bool]:
    """Per record (task, template, sample key, hash): is it a capped candidate above its template's threshold?"""
    over = []
    for task, template, key, content in zip(*columns):
        limit = thresholds.get((task, split, template))
        over.append(limit is not None and (key, content) > limit)
    return over


class _WriteShardFn(CountingDoFn):
    def __init__(self, output: str, formats: tuple[str, ...]):
        self._output = output
        self._formats = formats

    def setup(self) -> None:
        self._tf = ExampleEncoder()
        self._schema = arrow_schema()

    def _drop(self, table: pa.Table, keep: pa.Array, mask: list[bool], counter: str) -> pa.Array:
        """Remove the rows of `keep` that `mask` marks, counting them per task."""
        if not any(mask):
            return keep
        marked = pa.array(mask)
        for task, n in _task_counts(table.column("task").take(keep.filter(marked))).items():
            self.count(task, counter, n)
        return keep.filter(pc.invert(marked))

    def process(
        self,
        element: tuple[Destination, Iterable[SpillRef | None]],
        winners: Mapping[tuple[str, str], str],
        thresholds: Mapping[tuple[str, str, str], SampleKey | None],
        removed: Mapping[tuple[str, str, str], str],
    ) -> Iterator[dict[str, Any]]:
        (split, cluster, index, count), refs = element
        table = read_spilled(r for r in refs if r is not None)
        keep, duplicates = first_copies(table)
        for task, n in _task_counts(table.column("task").take(duplicates)).items():
            self.count(task, "duplicates", n)
        if winners:
            hashes = table.column("content_hash").take(keep).to_pylist()
            keep = self._drop(table, keep, lost_to_other_clusters(hashes, cluster, split, winners), "duplicates")
        if removed:
            examples = tuple(table.column(c).take(keep).to_pylist() for c in ("task", "example_id"))
            for counter in REMOVAL_REASONS:
                mask = removed_examples(examples, split, removed, counter)
                if any(mask):
                    keep = self._drop(table, keep, mask, counter)
                    examples = tuple(table.column(c).take(keep).to_pylist() for c in ("task", "example_id"))
        if thresholds:
            columns = tuple(table.column(c).take(keep).to_pylist() for c in ("task", "template_id", SAMPLE_KEY, "content_hash"))
            keep = self._drop(table, keep, over_cap(columns, split, thresholds), "capped")
        records = table.select(list(FIELD_NAMES)).take(keep).cast(self._schema)
        del table
        for task, n in _task_counts(records.column("task")).items():
            self.count(task, "written", n)
            self.count(task, f"written@{split}", n)
        for fmt in self._formats:
            rel = shard_path(fmt, split, cluster, index, count)
            chunks = (
                tfrecord_chunks(records, self._tf) if fmt == "tfrecord" else jsonl_chunks(records) if fmt == "jsonl" else [encode_parquet(records)]
            )
            size, digest = write_chunks(join_path(self._output, rel), chunks)
            yield {"path": rel, "format": fmt, "split": split, "cluster": cluster, "rows": records.num_rows, "bytes": size, "sha256": digest}


class WriteShards(beam.PTransform):
    """(destination, SpillRef) pairs -> shard infos (one dict per file written) + per-task counts.

    Side inputs: `winners` ((split, hash) -> cluster) from DedupDecisions, `thresholds`
    ((task, split, template) -> SampleKey | None) from the cap (empty without one), and `removed`
    ((split, task, example id) -> near_duplicates | contaminated) of whole examples to drop."""

    def __init__(self, output: str, formats: tuple[str, ...], layout: ShardLayout):
        super().__init__()
        self._output = output
        self._formats = formats
        self._layout = layout

    def expand(self, inputs: tuple[beam.PCollection, beam.PCollection, beam.PCollection]) -> Any:
        refs, winners, thresholds, removed = inputs
        every_shard = refs.pipeline | "EveryShard" >> beam.Create([(d, None) for d in self._layout.destinations()])
        return (
            (refs, every_shard)
            | "AllShards" >> beam.Flatten()
            | "GroupShards" >> beam.GroupByKey()
            | "Write" >> beam.ParDo(
                _WriteShardFn(self._output, self._formats),
                winners=beam.pvalue.AsDict(winners),
                thresholds=beam.pvalue.AsDict(thresholds),
                removed=beam.pvalue.AsDict(removed),
            ).with_outputs(COUNTS, main="shards")
        )
