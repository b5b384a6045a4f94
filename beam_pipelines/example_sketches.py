"""Example sketches: one compact sketch of every example of a read shard, as numbers.

Near-duplicate removal and contamination checks work on examples (a task's row), not records: an
example's records are its renderings, and comparing those would pair every row with itself. A
read shard's records go to one spill file (one task, one split), so the file holds every example
it has whole. Its sketch picks one zero-shot record per example (few-shot records quote other
examples), takes its slot text (sketch.py) and keeps only numbers: shingle hashes and MinHash
bands for near-dedup, an exact hash and n-gram hashes for contamination.

A render worker builds the sketch as it spills (`SketchBuilder`, fed record by record, so the
records are never read again); tasks replayed from the render cache are sketched by reading
their spill files back (`SketchExamples`). Either way what crosses workers is one sketch per read
shard, never rows.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.sketch import MinHasher, NearDedupParams, band_hashes, example_pieces, exact_hash, ngrams, piece_words, shingles
from flanforge.beam_pipelines.spill import SpillRef, read_spilled

SAMPLE_TEXT_CHARS = 240  # slot text kept per example for the removed-pairs sample
_PRIORITY = {"zero_shot": 0, "zero_shot_no_options": 0, "free_text": 1, "inverted": 2}  # few-shot types: 3
_COLUMNS = ("task", "split", "example_id", "template_id", "template_type", "inputs", "targets", "options")

TemplateSources = Mapping[str, Mapping[str, tuple[str, str]]]  # task -> template id -> (inputs, targets) source


@dataclass(frozen=True)
class SketchSettings:
    near: NearDedupParams | None  # None: no near-dedup in this build
    contamination_ngram: int | None  # words per n-gram; None: no contamination check


class Ragged:
    """One array per example, stored as one flat array and offsets: a sketch of 100,000 examples
    is two numpy arrays to pickle between stages, not 100,000."""

    def __init__(self, parts: list[np.ndarray], dtype: type):
        self.values = np.concatenate([np.zeros(0, dtype), *parts]).astype(dtype, copy=False)
        self.offsets = np.concatenate([[0], np.cumsum([len(p) for p in parts], dtype=np.int64)])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __getitem__(self, i: int) -> np.ndarray:
        return self.values[self.offsets[i] : self.offsets[i + 1]]

    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)


@dataclass
class FileSketch:
    """The examples of one spill file (one task and split), as numbers."""

    path: str
    task: str
    split: str
    example_ids: list[str]
    texts: list[str] = field(default_factory=list)  # slot text, truncated (near-dedup's pair samples)
    shingles: Ragged | None = None  # sorted distinct uint32 shingle hashes per example
    bands: np.ndarray | None = None  # (examples, bands) uint64
    exact: np.ndarray | None = None  # (examples,) uint64
    ngrams: Ragged | None = None  # distinct uint64 n-gram hashes per example


def template_sources(tasks: Iterable[TaskSpec]) -> dict[str, dict[str, tuple[str, str]]]:
    return {t.name: {tpl.id: (tpl.inputs, tpl.targets) for tpl in t.templates} for t in tasks}


def representatives(table: pa.Table) -> pa.Table:
    """One record per example: the zero-shot one of the smallest template id (few-shot last resort)."""
    priority = pa.array([_PRIORITY.get(t, 3) for t in table.column("template_type").to_pylist()], pa.int8())
    keyed = table.select(["example_id", "template_id"]).append_column("priority", priority)
    order = pc.sort_indices(keyed, sort_keys=[("example_id", "ascending"), ("priority", "ascending"), ("template_id", "ascending")])
    ids = table.column("example_id").take(order)
    if len(ids) == 0:
        return table.slice(0, 0)
    first = pa.concat_arrays([pa.array([True]), pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1)).combine_chunks()])
    return table.take(order.filter(first))


def sketch_table(table: pa.Table, path: str, sources: TemplateSources, settings: SketchSettings, hasher: MinHasher | None) -> FileSketch | None:
    """The sketch of one spill file's records (None when it has none)."""
    chosen = representatives(table.select(list(_COLUMNS)))
    if chosen.num_rows == 0:
        return None
    columns = {c: chosen.column(c).to_pylist() for c in _COLUMNS}
    task, split = columns["task"][0], columns["split"][0]
    templates = sources.get(task, {})
    pieces = [
        example_pieces(inputs, targets, options, *templates.get(tid, ("", "")))
        for inputs, targets, options, tid in zip(columns["inputs"], columns["targets"], columns["options"], columns["template_id"])
    ]
    return sketch_examples(path, task, split, columns["example_id"], pieces, settings, hasher)


class SketchBuilder:
    """The sketch of the spill file a render worker is writing, fed each record as it is spilled.

    Per example it keeps only the slot text of its best record so far (the rule of
    `representatives`), so nothing is read back and memory is one short text per example."""

    def __init__(self, path: str, sources: TemplateSources, settings: SketchSettings, hasher: MinHasher | None):
        self._path = path
        self._sources = sources
        self._settings = settings
        self._hasher = hasher
        self._best: dict[str, tuple[tuple[int, str], list[str]]] = {}
        self._where: tuple[str, str] | None = None

    def add(self, record: Mapping[str, Any]) -> None:
        rank = (_PRIORITY.get(record["template_type"], 3), record["template_id"])
        example = record["example_id"]
        held = self._best.get(example)
        if held is not None and held[0] <= rank:
            return
        self._where = (record["task"], record["split"])
        inputs_source, targets_source = self._sources.get(record["task"], {}).get(record["template_id"], ("", ""))
        self._best[example] = (rank, example_pieces(record["inputs"], record["targets"], record["options"], inputs_source, targets_source))

    def build(self) -> FileSketch | None:
        if self._where is None:
            return None
        ids = sorted(self._best)
        return sketch_examples(self._path, *self._where, ids, [self._best[e][1] for e in ids], self._settings, self._hasher)


def sketch_examples(
    path: str, task: str, split: str, example_ids: list[str], pieces: list[list[str]], settings: SketchSettings, hasher: MinHasher | None
) -> FileSketch:
    """The numbers of a file's examples, given each one's slot text."""
    sketch = FileSketch(path, task, split, example_ids)
    if settings.near is not None and hasher is not None:
        near = settings.near
        sets = [shingles(p, near.ngram) for p in pieces]
        sketch.shingles = Ragged(sets, np.uint32)
        sketch.bands = band_hashes(hasher.signatures(sets), near.bands, near.rows)
        sketch.texts = [" | ".join(p)[:SAMPLE_TEXT_CHARS] for p in pieces]
    if settings.contamination_ngram is not None:
        normalised = [piece_words(p) for p in pieces]
        sketch.exact = np.array([exact_hash(w) for w in normalised], dtype=np.uint64)
        sketch.ngrams = Ragged([ngrams(w, settings.contamination_ngram) for w in normalised], np.uint64)
    return sketch


def make_hasher(settings: SketchSettings) -> MinHasher | None:
    return MinHasher(settings.near.num_perm, settings.near.seed) if settings.near is not None else None


class _SketchFn(beam.DoFn):
    def __init__(self, sources: TemplateSources, settings: SketchSettings):
        self._sources = sources
        self._settings = settings

    def setup(self) -> None:
        self._hasher = make_hasher(self._settings)

    def process(self, element: tuple[str, Iterable[tuple[int, ...]]]) -> Iterator[FileSketch]:
        path, batch_lists = element
        batches = tuple(sorted({b for batches in batch_lists for b in batches}))
        table = read_spilled([SpillRef(path, batches, 0)])
        sketch = sketch_table(table, path, self._sources, self._settings, self._hasher)
        if sketch is not None:
            yield sketch


class SketchExamples(beam.PTransform):
    """(destination, SpillRef) pairs -> one FileSketch per spill file, read back (render-cache hits)."""

    def __init__(self, tasks: Iterable[TaskSpec], settings: SketchSettings):
        super().__init__()
        self._sources = template_sources(tasks)
        self._settings = settings

    def expand(self, refs: beam.PCollection) -> beam.PCollection:
        return (
            refs
            | "SpillFiles" >> beam.MapTuple(lambda _, ref: (ref.path, ref.batches))
            | "ByFile" >> beam.GroupByKey()
            | "Sketch" >> beam.ParDo(_SketchFn(self._sources, self._settings))
        )
