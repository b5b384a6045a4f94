"""The Render stage as Beam PTransforms: thin wrappers over render_shard.py (and the few-shot pools).

One element per read shard goes in; a handful per shard comes out (spill refs, a hash summary,
a note of the files written, counts, dead letters). Rows never become Beam elements.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import xxhash

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.counting import COUNTS, DEAD_LETTERS, CountingDoFn
from flanforge.beam_pipelines.example_sketches import SketchBuilder, SketchSettings, make_hasher, template_sources
from flanforge.beam_pipelines.hashing import seeded_hash
from flanforge.beam_pipelines.layout import ShardLayout
from flanforge.beam_pipelines.progress import report_shard
from flanforge.beam_pipelines.render import RenderSettings, compile_tasks
from flanforge.beam_pipelines.render_shard import ShardRenderer
from flanforge.beam_pipelines.sources import SourceRow, SourceShard, read_shard
from flanforge.beam_pipelines.spill import SpillWriter
from flanforge.beam_pipelines.storage import write_bytes
from flanforge.schemas.files import join_path

SUMMARIES = "summaries"
SHARD_FILES = "shard_files"
SKETCHES = "sketches"
# Train rows per task kept as few-shot exemplar candidates; each row draws its own K from these.
EXEMPLAR_POOL_SIZE = 64


def shard_file_stem(shard: SourceShard) -> str:
    """A read shard's spill file name: stable across runs, so a retried bundle overwrites its own file."""
    return xxhash.xxh3_64_hexdigest(f"{shard.task}\x1f{shard.key}".encode())


@dataclass(frozen=True)
class RenderJob:
    """What a render pass needs besides its read shards: the tasks and how to render them, where
    their records go (the output layout, the output root and each task's spill folder under it),
    and each capped read shard's candidate quota per template, keyed (task, shard key)."""

    tasks: tuple[TaskSpec, ...]
    settings: Mapping[str, RenderSettings]  # task -> how it is rendered (the build's, or its collection's)
    layout: ShardLayout
    output: str
    spill_dirs: Mapping[str, str]
    quotas: Mapping[tuple[str, str], int]
    progress_dir: str | None = None  # a local build's progress display reads what each read shard did here
    sketch: SketchSettings | None = None  # sketch each read shard's examples as they are spilled (example_sketches.py)


class _SketchingSink:
    """The spill writer, with each record also shown to the shard's SketchBuilder."""

    def __init__(self, spill: SpillWriter, sketch: SketchBuilder):
        self._spill = spill
        self._sketch = sketch

    def add(self, record: dict[str, Any], sample_key: int | None = None) -> None:
        self._sketch.add(record)
        self._spill.add(record, sample_key)


class _RenderShardFn(CountingDoFn):
    def __init__(self, job: RenderJob, top_up: bool, keep_summaries: bool):
        self._specs = {t.name: t for t in job.tasks}
        self._settings = {t.name: job.settings[t.name] for t in job.tasks}
        self._layout = job.layout
        self._output = job.output
        self._spill_dirs = dict(job.spill_dirs)
        self._quotas = dict(job.quotas)
        self._top_up = top_up
        self._keep_summaries = keep_summaries
        self._progress_dir = job.progress_dir
        self._sketch = job.sketch
        self._sketch_sources = template_sources(job.tasks) if job.sketch is not None else {}

    def setup(self) -> None:
        # Compile every template once per worker, never per row.
        self._compiled = compile_tasks(self._specs.values())
        self._hasher = make_hasher(self._sketch) if self._sketch is not None else None

    def process(self, shard: SourceShard, pools: Mapping[str, list], short: Iterable[str] = ()) -> Iterator[Any]:
        if self._top_up and shard.task not in set(short):
            return
        letters: list[dict[str, Any]] = []
        done: collections.Counter[str] = collections.Counter()

        def tally(task: str, counter: str, n: int) -> None:
            self.count(task, counter, n)
            done[counter] += n

        renderer = ShardRenderer(self._compiled[shard.task], self._settings[shard.task], tally, letters.append)
        rel = f"{self._spill_dirs[shard.task]}/{shard_file_stem(shard)}{'-top-up' if self._top_up else ''}"
        spill = SpillWriter(join_path(self._output, rel + ".arrow"), self._layout, shard.task, shard.split)
        builder = (
            SketchBuilder(join_path(self._output, rel + ".arrow"), self._sketch_sources, self._sketch, self._hasher)
            if self._sketch is not None else None
        )
        sink = spill if builder is None else _SketchingSink(spill, builder)
        quota = self._quotas.get((shard.task, shard.key))
        if self._top_up:
            renderer.render_top_up(shard, sink, pools, quota or 0)
        elif quota is None:
            renderer.render_all(shard, sink, pools)
        else:
            renderer.render_candidates(shard, sink, pools, quota)
        refs, summary = spill.close()
        if self._progress_dir and not self._top_up:
            report_shard(self._progress_dir, shard_file_stem(shard), shard.file_bytes, done["read"] + done["read_errors"], done["rendered"])
        for letter in letters:
            yield beam.pvalue.TaggedOutput(DEAD_LETTERS, letter)
        yield from refs
        yield beam.pvalue.TaggedOutput(SUMMARIES, summary)
        sketch = builder.build() if builder is not None else None
        if sketch is not None:
            yield beam.pvalue.TaggedOutput(SKETCHES, sketch)
        if self._keep_summaries:
            summary_bytes = summary.to_bytes()
            write_bytes(join_path(self._output, rel + ".summary.npz"), summary_bytes)
            yield beam.pvalue.TaggedOutput(
                SHARD_FILES,
                {"task": shard.task, "spill": rel + ".arrow", "summary": rel + ".summary.npz",
                 "refs": [[list(dest), list(ref.batches), ref.rows] for dest, ref in refs],
                 # checked when the entry is reused: a damaged or edited cache is re-rendered, never published
                 "spill_xxh3": spill.digest, "summary_xxh3": xxhash.xxh3_128_hexdigest(summary_bytes)},
            )


class RenderShards(beam.PTransform):
    """Read shards -> (destination, SpillRef) (main) + SUMMARIES + SHARD_FILES + COUNTS + DEAD_LETTERS.

    `pools` are the few-shot exemplar pools (ExemplarPools). Given `short` (the top-up pass), only
    the shards of the tasks it names are read, and what their first pass left out is rendered.
    `keep_summaries` also writes each shard's hash summary beside its spill file and reports both
    (for the render cache)."""

    def __init__(
        self,
        shards: list[SourceShard],
        job: RenderJob,
        *,
        pools: beam.PCollection,
        short: beam.PCollection | None = None,
        keep_summaries: bool = False,
    ):
        super().__init__()
        self._shards = shards
        self._fn = _RenderShardFn(job, short is not None, keep_summaries)
        self._side = {"pools": beam.pvalue.AsDict(pools)}
        if short is not None:
            self._side["short"] = beam.pvalue.AsList(short)

    def expand(self, pbegin: beam.pvalue.PBegin) -> Any:
        return (
            pbegin
            | "Shards" >> beam.Create(self._shards)
            | "Spread" >> beam.Reshuffle()  # so a multi-process DirectRunner or Dataflow reads in parallel
            | "ReadRender" >> beam.ParDo(self._fn, **self._side).with_outputs(
                SUMMARIES, SHARD_FILES, SKETCHES, COUNTS, DEAD_LETTERS, main="refs"
            )
        )


def pool_candidates(shard: SourceShard, seed: int) -> Iterator[tuple[str, tuple[int, str, dict[str, Any]]]]:
    for item in read_shard(shard):
        if isinstance(item, SourceRow):
            yield item.task, (seeded_hash(seed, "exemplar", item.example_id), item.example_id, item.row)


class ExemplarPools(beam.PTransform):
    """Train read shards -> (task, [(example_id, row)]): a seeded sample of each task's train rows
    (bottom-k by hash of the example id, the same on every runner), the few-shot exemplar pool."""

    def __init__(self, shards: list[SourceShard], seed: int):
        super().__init__()
        self._shards = [s for s in shards if s.split == "train"]
        self._seed = seed

    def expand(self, pbegin: beam.pvalue.PBegin) -> beam.PCollection:
        seed = self._seed
        if not self._shards:
            return pbegin | "NoExemplars" >> beam.Create([])
        return (
            pbegin
            | "TrainShards" >> beam.Create(self._shards)
            | "Spread" >> beam.Reshuffle()
            | "PoolKey" >> beam.FlatMap(pool_candidates, seed=seed)
            | "ExemplarPool" >> beam.combiners.Top.PerKey(EXEMPLAR_POOL_SIZE, key=lambda c: (c[0], c[1]), reverse=True)
            | "PoolRows" >> beam.MapTuple(lambda task, cands: (task, [(eid, row) for _, eid, row in cands]))
        )
