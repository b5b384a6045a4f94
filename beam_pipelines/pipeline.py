"""build_pipeline: the whole build as one Beam graph, stage by stage (see docs/ARCHITECTURE.md).

    Read | Render | Deduplicate | Balance | WriteShards, then WriteManifest

Each stage also emits per-task counts and, where rows can fail, dead letters; those are gathered
here so the manifest can account for every row. In an incremental build, tasks whose render is
cached skip Read and Render: ReadRenderCache replays their records, dead letters and counts into
Deduplicate, and WriteRenderCache keeps the freshly rendered tasks for next time.
"""
from __future__ import annotations

import apache_beam as beam

from flanforge.beam_pipelines.balance import Balance
from flanforge.beam_pipelines.catalog import TaskSpec
from flanforge.beam_pipelines.config import BuildConfig
from flanforge.beam_pipelines.counting import COUNTS, DEAD_LETTERS
from flanforge.beam_pipelines.dead_letters import WriteDeadLetters
from flanforge.beam_pipelines.dedup import Deduplicate
from flanforge.beam_pipelines.incremental import CachePlan, ReadRenderCache, WriteRenderCache
from flanforge.beam_pipelines.manifest import WriteManifest
from flanforge.beam_pipelines.shards import WriteShards
from flanforge.beam_pipelines.sources import SourceShard
from flanforge.beam_pipelines.transforms import ReadTasks, RenderTemplates


def build_pipeline(
    p: beam.Pipeline,
    config: BuildConfig,
    tasks: list[TaskSpec],
    shards: list[SourceShard],
    excluded_clusters: tuple[str, ...] = (),
    cache: CachePlan | None = None,
) -> beam.PCollection:
    """Add the build to pipeline `p`; returns the PCollection holding the manifest's path.

    `shards` are the reads of the tasks to render (all tasks unless `cache` reuses some);
    `excluded_clusters` are kept out of training because of held-out clusters (recorded in the manifest)."""
    reused = cache.reused_tasks if cache else frozenset()
    read = p | "Read" >> ReadTasks(shards)
    rendered = read["rows"] | "Render" >> RenderTemplates([t for t in tasks if t.name not in reused], config)
    fresh_dead = (read[DEAD_LETTERS], rendered[DEAD_LETTERS]) | "RenderDeadLetters" >> beam.Flatten()
    fresh_counts = (read[COUNTS], rendered[COUNTS]) | "RenderCounts" >> beam.Flatten()
    record_streams, dead_streams, count_streams = [rendered["records"]], [fresh_dead], [fresh_counts]
    if cache and cache.reused:
        replayed = p | "ReadRenderCache" >> ReadRenderCache(config.output, cache.reused)
        record_streams.append(replayed["records"])
        dead_streams.append(replayed[DEAD_LETTERS])
        count_streams.append(replayed[COUNTS])
    if cache and cache.write and cache.to_render:
        _ = (rendered["records"], fresh_dead, fresh_counts) | "WriteRenderCache" >> WriteRenderCache(config.output, cache.to_render)

    all_records = tuple(record_streams) | "AllRendered" >> beam.Flatten()
    unique = all_records | "Deduplicate" >> Deduplicate()
    balanced = unique["records"] | "Balance" >> Balance(config.max_examples_per_task, config.seed)
    written = balanced["records"] | "WriteShards" >> WriteShards(config.output, config.formats, config.target_shard_bytes)

    dead = (
        tuple(dead_streams)
        | "AllDeadLetters" >> beam.Flatten()
        | "WriteDeadLetters" >> WriteDeadLetters(config.output)
    )
    counts = (
        (*count_streams, unique[COUNTS], balanced[COUNTS], written[COUNTS])
        | "AllCounts" >> beam.Flatten()
        | "SumCounts" >> beam.CombinePerKey(sum)
    )
    return (written["shards"], counts, dead) | "WriteManifest" >> WriteManifest(config, tasks, excluded_clusters, cache)
