"""build_pipeline: the whole build as one Beam graph, stage by stage (see docs/ARCHITECTURE.md).

    Render (read + render into spill files) | [TopUp] | [SketchExamples | NearDuplicates, Contamination]
    | Deduplicate (hash summaries) | WriteShards, then WriteManifest

Rows travel only inside a worker: Render writes them to spill files grouped by output shard, and
what flows through the graph are file references, hash summaries, counts and dead letters. The
one shuffle groups references by output shard; dedup within a cluster and the caps are applied by
the shard writers, with the cross-cluster winners and the cap thresholds as side inputs computed
from the summaries. In an incremental build, cached tasks skip Render: ReadRenderCache replays
their references, summaries, counts and dead letters.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Iterable, Mapping

import apache_beam as beam

from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.counting import COUNTS, DEAD_LETTERS
from flanforge.beam_pipelines.contamination import FOUND, Contamination, sketch_external
from flanforge.beam_pipelines.dead_letters import WriteDeadLetters
from flanforge.beam_pipelines.example_sketches import SketchExamples, SketchSettings
from flanforge.beam_pipelines.dedup import CROSS, DedupDecisions
from flanforge.beam_pipelines.incremental import SPILL_DIR, CachePlan, ReadRenderCache, WriteRenderCache
from flanforge.beam_pipelines.layout import ShardLayout
from flanforge.beam_pipelines.manifest import WriteManifest
from flanforge.beam_pipelines.near_dedup import LOSERS, NearDuplicates
from flanforge.beam_pipelines.publish import Publish, staging_root
from flanforge.beam_pipelines.render import RenderSettings
from flanforge.beam_pipelines.shards import REMOVAL_REASONS, WriteShards
from flanforge.beam_pipelines.sources import KINDS, SourceShard
from flanforge.beam_pipelines.transforms import SHARD_FILES, SKETCHES, SUMMARIES, ExemplarPools, RenderJob, RenderShards


@dataclass(frozen=True)
class BuildPlan:
    """What the launcher decided before anything runs (build.py `plan_build`)."""

    tasks: list[TaskSpec]
    shards: dict[str, list[SourceShard]]  # task -> its read shards
    excluded_clusters: tuple[str, ...]  # kept out of the build because of held-out clusters
    fingerprints: dict[str, str]  # task -> hash of what its render depends on (see incremental.py)
    layout: ShardLayout  # output shard count per (split, cluster)
    quotas: dict[tuple[str, str], int]  # (task, read shard key) -> candidates per template (capped splits)
    settings: Mapping[str, RenderSettings]  # task -> how it is rendered (the build's, or its collection's)
    caps: Mapping[str, int]  # task -> its max training examples; uncapped tasks are absent
    # External evaluation sets (--decontaminate-against): their read shards and text fields.
    external: tuple[tuple[SourceShard, str], ...] = ()
    # Evaluation data is matched through a side-input index, or when large by a hash-range join.
    contamination_join: bool = False
    # A dry run's tasks that were not planned from their sources: task -> why (build.plan_build).
    unread: Mapping[str, str] = field(default_factory=dict)

    def shards_of(self, tasks: Iterable[str]) -> list[SourceShard]:
        return [s for t in sorted(tasks) for s in self.shards[t]]


class _Streams:
    """The refs, summaries, sketches, counts and dead letters of every Render branch, flattened at the end."""

    def __init__(self) -> None:
        self.refs: list[beam.PCollection] = []
        self.summaries: list[beam.PCollection] = []
        self.sketches: list[beam.PCollection] = []
        self.counts: list[beam.PCollection] = []
        self.dead: list[beam.PCollection] = []

    def add(self, outputs: Mapping[str, beam.PCollection], sketched: bool = False) -> None:
        """`sketched`: the branch also emits example sketches (a render that sketches as it spills)."""
        self.refs.append(outputs["refs"])
        self.summaries.append(outputs[SUMMARIES])
        if sketched:
            self.sketches.append(outputs[SKETCHES])
        self.counts.append(outputs[COUNTS])
        self.dead.append(outputs[DEAD_LETTERS])


def _short_tasks(totals: beam.PCollection, counts: beam.PCollection, caps: Mapping[str, int]) -> beam.PCollection:
    """Tasks whose surviving candidates fall short of their cap while rows were left unrendered."""
    unrendered = (
        counts
        | "Unrendered" >> beam.Filter(lambda kv: kv[0][1] == "capped")
        | "ByTask" >> beam.Map(lambda kv: (kv[0][0], kv[1]))
        | "SumUnrendered" >> beam.CombinePerKey(sum)
    )
    kept = totals | "KeptByTask" >> beam.Map(lambda kv: (kv[0][0], kv[1]))
    return (
        {"kept": kept, "left": unrendered}
        | "Join" >> beam.CoGroupByKey()
        | "Short" >> beam.FlatMap(lambda kv: [kv[0]] if sum(kv[1]["left"]) > 0 and sum(kv[1]["kept"]) < caps[kv[0]] else [])
    )


def sketch_settings(config: BuildConfig, plan: BuildPlan) -> SketchSettings | None:
    """What to sketch of every example: for --near-dedup, and for the contamination check when the
    build has evaluation data to check against (None: neither, and no example is sketched)."""
    evaluation = plan.external or any(s.split != "train" for shards in plan.shards.values() for s in shards)
    check = bool(config.contamination_ngram) and bool(evaluation)
    if not config.near_dedup and not check:
        return None
    return SketchSettings(config.near_dedup_params if config.near_dedup else None, config.contamination_ngram if check else None)


def _examples_to_remove(
    p: beam.Pipeline, config: BuildConfig, settings: SketchSettings | None, plan: BuildPlan, streams: _Streams, staging: str
) -> tuple[beam.PCollection, beam.PCollection]:
    """((split, task, example id), near_duplicates | contaminated) of the examples the shard writers
    drop, and the near-duplicate sample files. Contamination findings join the counts (`streams`)."""
    removals: list[beam.PCollection] = []
    samples = p | "NoNearDuplicates" >> beam.Create([])
    if settings is None:
        return p | "NothingRemoved" >> beam.Create([]), samples
    sketches = tuple(streams.sketches) | "AllSketches" >> beam.Flatten()
    if settings.near is not None:
        near = sketches | "NearDuplicates" >> NearDuplicates(settings.near, staging)
        removals.append(near[LOSERS] | "NearDuplicateExamples" >> beam.MapTuple(lambda key, _: (key, "near_duplicates")))
        samples = near["samples"]
    if settings.contamination_ngram is not None:
        n = settings.contamination_ngram
        checked: tuple[beam.PCollection, ...] = (sketches,)
        if plan.external:
            checked += (
                p
                | "ExternalEvaluation" >> beam.Create(list(plan.external))
                | "SketchExternal" >> beam.FlatMapTuple(lambda shard, field: sketch_external(shard, field, n)),
            )
        found = checked | "Contamination" >> Contamination(plan.contamination_join)
        streams.counts.append(found["counts"])
        if config.decontaminate:
            removals.append(found[FOUND] | "ContaminatedExamples" >> beam.Map(lambda key: (("train", *key), "contaminated")))
    # An example that is both keeps the first reason of the funnel (near_duplicates).
    removed = (
        tuple(removals) | "AllRemoved" >> beam.Flatten()
        | "OneReason" >> beam.CombinePerKey(lambda reasons: min(reasons, key=REMOVAL_REASONS.index, default=None))
    ) if removals else p | "NothingRemoved" >> beam.Create([])
    return removed, samples


def _file_metadata(p: beam.Pipeline, plan: BuildPlan) -> beam.PCollection:
    """(task, metadata) of every task that is one source file whose kind describes its task (an
    NIv2 task file's categories and languages), parsed on a worker: the launcher only lists the
    files (and peeks at their first byte)."""
    files: dict[str, SourceShard] = {}
    for task, shards in sorted(plan.shards.items()):
        for s in shards:
            if KINDS[s.kind].file_metadata is not None:
                files.setdefault(task, s)
    if not files:
        return p | "NoFileMetadata" >> beam.Create([])
    return (
        p
        | "TaskFiles" >> beam.Create(sorted((task, s.kind, s.location) for task, s in files.items()))
        | "ReadTaskFileMetadata" >> beam.MapTuple(lambda task, kind, location: (task, KINDS[kind].file_metadata(location)))
    )


def build_pipeline(
    p: beam.Pipeline, config: BuildConfig, plan: BuildPlan, cache: CachePlan, progress_dir: str | None = None
) -> beam.PCollection:
    """Add the build to pipeline `p`; returns the PCollection holding the manifest's path.
    `progress_dir`: a local folder where render workers report finished read shards (progress.py)."""
    caps, output = plan.caps, config.output
    to_render = [t for t in plan.tasks if t.name in cache.to_render]
    shards = plan.shards_of(cache.to_render)
    # Exemplar pools for every few-shot task that may render here: the changed ones, and the capped
    # cached ones, which the top-up pass may have to render.
    pool_tasks = [t for t in plan.settings if plan.settings[t].few_shot and (t in cache.to_render or t in caps)]
    pools = (
        p | "ExemplarPools" >> ExemplarPools(plan.shards_of(pool_tasks), config.seed)
        if pool_tasks
        else p | "NoExemplars" >> beam.Create([])
    )
    streams = _Streams()
    sketching = sketch_settings(config, plan)
    job = RenderJob(tuple(to_render), plan.settings, plan.layout, output, cache.spill_dirs(), plan.quotas, progress_dir, sketching)
    rendered = p | "Render" >> RenderShards(shards, job, pools=pools, keep_summaries=cache.write)
    streams.add(rendered, sketched=sketching is not None)
    if cache.reused:
        replayed = p | "ReadRenderCache" >> ReadRenderCache(output, cache.reused)
        streams.add(replayed)
        if sketching is not None:  # cached renders are sketched from their spill files
            streams.sketches.append(replayed["refs"] | "SketchCachedExamples" >> SketchExamples(plan.tasks, sketching))
    if cache.write and to_render:
        _ = (rendered[SHARD_FILES], rendered[DEAD_LETTERS], rendered[COUNTS]) | "WriteRenderCache" >> WriteRenderCache(output, cache.to_render)

    clusters = {t.name: t.cluster for t in plan.tasks}
    if not caps:
        thresholds = p | "NoCap" >> beam.Create([])
    else:
        first = tuple(streams.summaries) | "FirstSummaries" >> beam.Flatten() | "FirstPass" >> DedupDecisions(clusters, caps)
        short = _short_tasks(first["totals"], tuple(streams.counts) | "FirstCounts" >> beam.Flatten(), caps)
        capped_shards = [s for s in plan.shards_of(caps) if (s.task, s.key) in plan.quotas]
        # Every capped task may need a top-up (cached ones too); it spills to scratch: it is never cached.
        top_up = replace(job, tasks=tuple(t for t in plan.tasks if t.name in caps), spill_dirs={t: f"{SPILL_DIR}/{t}" for t in caps})
        streams.add(p | "TopUp" >> RenderShards(capped_shards, top_up, pools=pools, short=short), sketched=sketching is not None)
    refs = tuple(streams.refs) | "AllRefs" >> beam.Flatten()
    # The corpus is written to staging; Publish swaps it in for the published one at the very end.
    staging = staging_root(output)
    removed, samples = _examples_to_remove(p, config, sketching, plan, streams, staging)
    decisions = tuple(streams.summaries) | "AllSummaries" >> beam.Flatten() | "Deduplicate" >> DedupDecisions(clusters, caps, removed)
    if caps:
        thresholds = decisions["thresholds"]
    written = (refs, decisions[CROSS], thresholds, removed) | "WriteShards" >> WriteShards(staging, config.formats, plan.layout)

    dead = tuple(streams.dead) | "AllDeadLetters" >> beam.Flatten() | "WriteDeadLetters" >> WriteDeadLetters(staging)
    counts = (*streams.counts, written[COUNTS]) | "AllCounts" >> beam.Flatten() | "SumCounts" >> beam.CombinePerKey(sum)
    staged = (written["shards"], counts, dead, samples, _file_metadata(p, plan)) | "WriteManifest" >> WriteManifest(
        config, plan.tasks, plan.excluded_clusters, cache.fingerprints, cache.reused_tasks, root=staging
    )
    return staged | "Publish" >> Publish(output)
