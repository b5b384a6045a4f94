"""What `flanforge stats` knows about a built corpus: the manifest's accounting, and what only the
Parquet shards can say (records per template, text lengths, example rows).

Reading is bounded whatever the size of the corpus:

* Index pass, every Parquet shard, two columns (`task`, `template_id`; dictionary-encoded and
  tiny): records per (task, template), rows per shard checked against the manifest, and where
  each task's first K records are. Streamed in batches of INDEX_BATCH_ROWS.
* Sample pass, the text columns of a prefix of each shard: shard s of R_s rows in a corpus of R
  Parquet rows gives its first ceil(N * R_s / R) rows (all of them when R <= N) to the length
  histograms, so at most N + one row per shard are measured. The writers sort every shard by
  content hash (beam_pipelines/shards.py), so a shard's first rows are the ones with the lowest
  content hashes: a sample fixed by the records themselves (same corpus, same sample), spread
  evenly over the shard's tasks and templates. A prefix is also cheap: with pre_buffer off,
  pyarrow fetches a column chunk page by page, so a 1,000-row prefix of a shard reads about a
  megabyte, not the shard. The same streaming read picks up the example rows the index found.

Only counts, histograms (a few integers each) and K examples per task are kept.
"""
from __future__ import annotations

import json
import math
from contextlib import contextmanager
from dataclasses import dataclass, fields
from typing import Any, Iterable, Iterator, Mapping

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from flanforge.beam_pipelines.stats.histogram import TextLengths
from flanforge.schemas.files import first_line, open_input, read_bytes
from flanforge.schemas.manifest import COUNTERS, MANIFEST_NAME, Manifest, ManifestError, ShardInfo, read_manifest

INDEX_BATCH_ROWS = 65_536  # rows per batch of the index pass (two short columns)
SAMPLE_BATCH_ROWS = 4_096  # rows per batch of texts (a few-shot input can run to ~10 KB: ~40 MB a batch)
READ_BUFFER_BYTES = 1 << 20  # how much of a column chunk is fetched at a time when streaming
INDEX_COLUMNS = ["task", "template_id"]


@dataclass(frozen=True)
class Example:
    task: str
    template_id: str
    split: str
    inputs: str
    targets: str


SAMPLE_COLUMNS = [f.name for f in fields(Example)]  # the texts to measure are among them


@dataclass(frozen=True)
class CorpusStats:
    manifest: Manifest
    counters: tuple[str, ...]  # COUNTERS order, then any the manifest has that this version does not know
    by_cluster: dict[str, dict[str, int]]  # cluster -> summed counters (only those its tasks have)
    totals: dict[str, int]
    contamination: Any  # the manifest's top-level "contamination" object, when it has one
    near_duplicate_samples: list[Any]  # the manifest's files of near-duplicate pairs kept for inspection
    parquet_rows: int  # rows in the Parquet shards (0 when the build wrote no Parquet)
    templates: dict[str, dict[str, int]]  # task -> template_id -> Parquet records
    lengths: dict[str, TextLengths]  # cluster -> histograms of its sampled records
    sample_limit: int  # N of --sample-rows
    examples: dict[str, list[Example]]  # task -> its first K records in shard order
    problems: tuple[str, ...]  # where the shards disagree with the manifest

    @property
    def sampled_rows(self) -> int:
        return sum(t.rows for t in self.lengths.values())

    def overall_lengths(self) -> TextLengths:
        merged = TextLengths()
        for cluster in sorted(self.lengths):
            merged.merge(self.lengths[cluster])
        return merged


def load_manifest(root: str) -> tuple[Manifest, dict[str, Any]]:
    """The checked manifest and its raw JSON: the report renders the contamination and
    near-duplicate sections from the JSON, generically, so a manifest written by an older or a
    newer flanforge (sections absent, or with fields this version does not know) still renders."""
    manifest = read_manifest(root)
    return manifest, json.loads(read_bytes(manifest.uri(MANIFEST_NAME)))


def counter_names(counts: Iterable[Mapping[str, int]]) -> tuple[str, ...]:
    """Every counter in COUNTERS order, then unknown ones (a newer build's) sorted by name."""
    seen: set[str] = set()
    for c in counts:
        seen.update(c)
    return COUNTERS + tuple(sorted(seen - set(COUNTERS)))


def sum_present(counts: Iterable[Mapping[str, int]]) -> dict[str, int]:
    """Counters summed; a counter none of the inputs has stays absent (shown as not counted, not 0)."""
    total: dict[str, int] = {}
    for c in counts:
        for name, n in c.items():
            total[name] = total.get(name, 0) + n
    return total


def sample_quotas(rows: list[int], limit: int) -> list[int]:
    """Rows to measure from each shard: all of them within the limit, else each shard's share,
    rounded up (so at most limit + one row per shard)."""
    total = sum(rows)
    if total <= limit:
        return list(rows)
    return [min(r, math.ceil(limit * r / total)) for r in rows]


def count_templates(batch: pa.RecordBatch) -> dict[tuple[str, str], int]:
    """(task, template_id) -> records in the batch.

    Counted with value_counts over one integer per row (the two columns' dictionary codes
    combined): Table.group_by would do the same but imports pyarrow's query engine, and pandas
    with it, which costs more than the whole report of a small corpus."""
    tasks = pc.dictionary_encode(batch.column("task"))
    templates = pc.dictionary_encode(batch.column("template_id"))
    width = len(templates.dictionary)
    key = pc.add(pc.multiply(tasks.indices.cast(pa.int64()), width), templates.indices.cast(pa.int64()))
    counted = pc.value_counts(key)
    names, ids = tasks.dictionary.to_pylist(), templates.dictionary.to_pylist()
    out = {}
    for combined, n in zip(counted.field("values").to_pylist(), counted.field("counts").to_pylist()):
        task, template = divmod(combined, width)
        out[names[task], ids[template]] = n
    return out


def first_rows_of(tasks: pa.Array | pa.ChunkedArray, wanted: Mapping[str, int]) -> dict[str, list[int]]:
    """task -> the positions of its first `wanted[task]` records in a column of task names."""
    found: dict[str, list[int]] = {}
    for task, n in wanted.items():
        if n > 0:
            positions = pc.indices_nonzero(pc.equal(tasks, task)).to_pylist()[:n]
            if positions:
                found[task] = positions
    return found


@contextmanager
def open_shard(manifest: Manifest, shard: ShardInfo) -> Iterator[pq.ParquetFile]:
    """A streaming Parquet reader of one listed shard; a missing or unreadable shard is a
    ManifestError that names it."""
    uri = manifest.uri(shard.path)
    try:
        f = open_input(uri)
    except FileNotFoundError:
        raise ManifestError(f"shard listed in the manifest is missing: {uri}") from None
    try:
        yield pq.ParquetFile(f, pre_buffer=False, buffer_size=READ_BUFFER_BYTES)
    except (pa.ArrowException, OSError) as e:
        raise ManifestError(f"shard {uri} cannot be read as Parquet: {first_line(e)}") from e
    finally:
        f.close()


def shard_batches(manifest: Manifest, shard: ShardInfo, columns: list[str], batch_rows: int) -> Iterator[pa.RecordBatch]:
    """The shard's rows from the start; a consumer that stops early has read only what it used."""
    with open_shard(manifest, shard) as parquet:
        yield from parquet.iter_batches(batch_size=batch_rows, columns=columns, use_threads=False)


@dataclass
class ShardIndex:
    """What the index pass learns."""

    templates: dict[str, dict[str, int]]
    example_rows: dict[int, dict[int, str]]  # shard number -> row -> task, for the examples
    problems: list[str]


def index_shards(manifest: Manifest, shards: list[ShardInfo], examples_per_task: int) -> ShardIndex:
    templates: dict[str, dict[str, int]] = {}
    wanted = {task: examples_per_task for task in sorted(manifest.tasks)}
    example_rows: dict[int, dict[int, str]] = {}
    problems = []
    for number, shard in enumerate(shards):
        offset = 0
        for batch in shard_batches(manifest, shard, INDEX_COLUMNS, INDEX_BATCH_ROWS):
            in_batch = count_templates(batch)
            for (task, template), n in in_batch.items():
                per_template = templates.setdefault(task, {})
                per_template[template] = per_template.get(template, 0) + n
            present = {task: wanted.get(task, 0) for task, _ in in_batch}
            for task, positions in first_rows_of(batch.column("task"), present).items():
                wanted[task] -= len(positions)
                example_rows.setdefault(number, {}).update({offset + p: task for p in positions})
            offset += batch.num_rows
        if offset != shard.rows:
            problems.append(f"{shard.path} has {offset:,} rows, the manifest says {shard.rows:,}")
    for task in sorted(set(manifest.tasks) | set(templates)) if shards else ():
        found = sum(templates.get(task, {}).values())
        expected = manifest.tasks[task].counts.get("written", 0) if task in manifest.tasks else 0
        if found != expected:
            problems.append(f"task {task}: the Parquet shards hold {found:,} records, the manifest says {expected:,} written")
    return ShardIndex({t: dict(sorted(c.items())) for t, c in sorted(templates.items())}, example_rows, problems)


def sample_shards(
    manifest: Manifest, shards: list[ShardInfo], quotas: list[int], example_rows: Mapping[int, Mapping[int, str]]
) -> tuple[dict[str, TextLengths], dict[str, list[Example]]]:
    """Length histograms of each shard's first `quota` rows, and the example rows the index found."""
    lengths: dict[str, TextLengths] = {}
    examples: dict[str, list[Example]] = {}
    for number, (shard, quota) in enumerate(zip(shards, quotas, strict=True)):
        picks = example_rows.get(number, {})
        needed = max(quota, max(picks, default=-1) + 1)
        if needed == 0:
            continue
        offset = 0
        for batch in shard_batches(manifest, shard, SAMPLE_COLUMNS, min(needed, SAMPLE_BATCH_ROWS)):
            measured = min(batch.num_rows, max(quota - offset, 0))
            if measured:
                lengths.setdefault(shard.cluster, TextLengths()).add(
                    batch.column("inputs").slice(0, measured).to_pylist(), batch.column("targets").slice(0, measured).to_pylist()
                )
            for row in sorted(r for r in picks if offset <= r < offset + batch.num_rows):
                example = Example(**{name: batch.column(name)[row - offset].as_py() for name in SAMPLE_COLUMNS})
                examples.setdefault(example.task, []).append(example)
            offset += batch.num_rows
            if offset >= needed:
                break
    return dict(sorted(lengths.items())), dict(sorted(examples.items()))


def gather(root: str, *, sample_rows: int, examples_per_task: int) -> CorpusStats:
    """Everything the report shows, from DIR/manifest.json and the Parquet shards it lists."""
    if sample_rows < 1 or examples_per_task < 0:
        raise ValueError("--sample-rows must be at least 1 and --examples at least 0")
    manifest, raw = load_manifest(root)
    counts = [entry.counts for entry in manifest.tasks.values()]
    by_cluster: dict[str, list[dict[str, int]]] = {}
    for entry in manifest.tasks.values():
        by_cluster.setdefault(entry.cluster, []).append(entry.counts)
    shards = manifest.shards_for(fmt="parquet")
    index = index_shards(manifest, shards, examples_per_task)
    quotas = sample_quotas([s.rows for s in shards], sample_rows)
    lengths, examples = sample_shards(manifest, shards, quotas, index.example_rows)
    return CorpusStats(
        manifest=manifest,
        counters=counter_names(counts),
        by_cluster={c: sum_present(v) for c, v in sorted(by_cluster.items())},
        totals=sum_present(counts),
        contamination=raw.get("contamination"),
        near_duplicate_samples=list(raw.get("near_duplicate_samples") or ()),
        parquet_rows=sum(s.rows for s in shards),
        templates=index.templates,
        lengths=lengths,
        sample_limit=sample_rows,
        examples=examples,
        problems=tuple(index.problems),
    )
