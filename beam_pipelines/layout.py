"""Shard layout: how many output shards each (split, cluster) gets, decided on the launcher.

A record's output shard is `bucket_of(content_hash, N)` with N the shard count of its (split,
cluster). Because the dedup key picks the shard, every copy of a record within a cluster meets in
one writer: the dedup group *is* the shard, so the build shuffles only references to spill files,
never rows. That needs N before any row is rendered, so it comes from an estimate made here from
what the launcher already knows: the size of every planned read shard, and the task's own sample
rows rendered through its templates (bytes per source row, records per row, bytes per record).
The estimate only sets how many files a partition is cut into; it is a pure function of the plan,
so every runner and worker count gets the same layout.

Nothing here imports Beam.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Iterable, Mapping

from flanforge.beam_pipelines.hashing import bucket_of
from flanforge.beam_pipelines.render import CompiledTask, RenderError, RowError, TemplateMode, plan_applications
from flanforge.beam_pipelines.sources import SourceShard
from flanforge.schemas.records import EVAL_ZEROSHOT

ROW_OVERHEAD_BYTES = 120  # ids and metadata per record, on top of its text
GZIP_RATIO = 3  # a gzipped text source holds about this many times its size in rows
FALLBACK_ROW_BYTES = 200.0  # a task whose samples say nothing (none render)
FALLBACK_RECORD_BYTES = 400.0

Destination = tuple[str, str, int, int]  # (split, cluster, shard index, shard count): one output file per format


def shard_count(total_bytes: float, target_shard_bytes: int) -> int:
    return max(1, math.ceil(total_bytes / target_shard_bytes))


def shard_weight(shard: SourceShard) -> tuple[int, str]:
    """How much of its source a read shard covers: (amount, 'bytes' | 'rows')."""
    if shard.end < 0:  # a whole file read in one go (CSV, TSV, TFRecord, gzip)
        return shard.file_bytes * (GZIP_RATIO if shard.location.endswith(".gz") else 1), "bytes"
    if shard.kind == "jsonl":
        return shard.end - shard.start, "bytes"
    return shard.end - shard.start, "rows"


@dataclass(frozen=True)
class TaskProfile:
    """What one source row of a task turns into, measured on the spec's sample rows."""

    source_bytes_per_row: float  # as a JSON line
    delimited_bytes_per_row: float  # as a CSV/TSV line (values only)
    train_applications: float  # records per row before dedup and caps (few-shot variants only in train)
    other_applications: float  # ... in other splits
    eval_applications: float  # ... in a held-out cluster's eval_zeroshot split
    record_bytes: float  # inputs + targets + overhead, per record

    def rows(self, shard: SourceShard) -> float:
        amount, unit = shard_weight(shard)
        if unit == "rows":
            return amount
        return amount / (self.delimited_bytes_per_row if shard.kind in ("csv", "tsv") else self.source_bytes_per_row)

    def records(self, shard: SourceShard) -> float:
        split = shard.split
        per_row = self.eval_applications if split == EVAL_ZEROSHOT else self.train_applications if split == "train" else self.other_applications
        return self.rows(shard) * per_row


def profile_task(task: CompiledTask, *, mode: TemplateMode, options_variants: str, few_shot: int) -> TaskProfile:
    spec = task.spec
    n = task.n_templates
    if mode.kind == "all":
        picks = [list(range(n))]
    elif mode.kind == "round_robin":
        picks = [[i] for i in range(n)]
    else:
        picks = [list(range(min(mode.k, n)))]
    def mean_applications(few: bool) -> float:
        return sum(len(plan_applications(task, p, options_variants=options_variants, evaluation=False, few_shot=few)) for p in picks) / len(picks)

    train_apps = plan_applications(task, picks[0], options_variants=options_variants, evaluation=False, few_shot=few_shot > 0)
    sizes: list[float] = []
    for raw in spec.samples:
        try:
            variables = task.prepare(raw)
        except RowError:
            continue
        if variables is None:
            continue
        for app in train_apps:
            try:
                r = task.render(variables, app.template_index, app.show_options)
            except RenderError:
                continue
            shots = (few_shot + 1) if app.few_shot else 1
            sizes.append(len(r.inputs) * shots + len(r.targets) + ROW_OVERHEAD_BYTES)
    row_bytes = [len(json.dumps(dict(raw), ensure_ascii=False, default=str)) + 1 for raw in spec.samples]
    cell_bytes = [sum(len(str(v)) + 1 for v in raw.values()) for raw in spec.samples]
    return TaskProfile(
        source_bytes_per_row=sum(row_bytes) / len(row_bytes) if row_bytes else FALLBACK_ROW_BYTES,
        delimited_bytes_per_row=sum(cell_bytes) / len(cell_bytes) if cell_bytes else FALLBACK_ROW_BYTES,
        train_applications=mean_applications(few_shot > 0),
        other_applications=mean_applications(False),
        eval_applications=float(len(plan_applications(task, [], options_variants=options_variants, evaluation=True))),
        record_bytes=sum(sizes) / len(sizes) if sizes else FALLBACK_RECORD_BYTES,
    )


@dataclass(frozen=True)
class ShardLayout:
    """Shard count per (split, cluster), keyed 'split/cluster' so it reads well in the manifest."""

    counts: Mapping[str, int]

    def count(self, split: str, cluster: str) -> int:
        return self.counts[f"{split}/{cluster}"]

    def destination(self, split: str, cluster: str, content_hash: str) -> Destination:
        n = self.count(split, cluster)
        return split, cluster, bucket_of(content_hash, n), n

    def destinations(self) -> list[Destination]:
        """Every output shard, empty ones included: `part-SSSSS-of-NNNNN` is always complete."""
        out = []
        for key, n in sorted(self.counts.items()):
            split, cluster = key.split("/", 1)
            out += [(split, cluster, i, n) for i in range(n)]
        return out


def plan_layout(
    tasks: Iterable[CompiledTask],
    shards: Mapping[str, list[SourceShard]],
    profiles: Mapping[str, TaskProfile],
    *,
    target_shard_bytes: int,
    caps: Mapping[str, int],
    capped_splits: frozenset[str] = frozenset({"train"}),
) -> ShardLayout:
    """Estimated output bytes per (split, cluster) -> shard counts (see the module docstring)."""
    estimated: dict[str, float] = {}
    for task in tasks:
        name, profile = task.spec.name, profiles[task.spec.name]
        per_split: dict[str, float] = {}
        for s in shards[name]:
            per_split[s.split] = per_split.get(s.split, 0.0) + profile.records(s)
        for split, records in per_split.items():
            if name in caps and split in capped_splits:
                records = min(records, caps[name])
            key = f"{split}/{task.spec.cluster}"
            estimated[key] = estimated.get(key, 0.0) + records * profile.record_bytes
    return ShardLayout({key: shard_count(b, target_shard_bytes) for key, b in sorted(estimated.items())})
