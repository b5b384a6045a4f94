"""Deduplicate: exact dedup on the normalised content hash, within each split.

Of all copies of a (split, content_hash) the kept one is the smallest (task, example_id,
template_id), a rule that does not depend on arrival order, so every runner keeps the same one.
Dedup is per split so that evaluation data is never thinned by training data.

The output shard is chosen by content hash within a (split, cluster), so copies inside one cluster
always meet in one shard writer, which applies the rule itself (`first_copies`). Only copies in
*different* clusters are decided here, from hash summaries (16 bytes a record, never the rows):
`DedupDecisions` groups the summaries by split and hash range and emits, for every hash present in
more than one cluster, the cluster of its winner (the copy with the smallest task name wins, so no
more than the task is needed). For capped tasks it also finds which rendered candidates survive
dedup, which is what the cap is shared out over (balance.py).
"""
from __future__ import annotations

from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from flanforge.beam_pipelines.balance import CapThresholds
from flanforge.beam_pipelines.spill import HashSummary

WINNER_ORDER = ("content_hash", "task", "example_id", "template_id")
HASH_PARTS = 16  # summaries are grouped by (split, hash range), so no worker holds a whole split's hashes
CROSS, SURVIVORS = "cross", "survivors"


def first_copies(table: pa.Table) -> tuple[pa.Array, pa.Array]:
    """(kept, dropped) row indices: kept in content-hash order, one copy of each hash, per the rule.

    Indices rather than tables, so the caller copies the rows once, after every drop is known."""
    order = pc.sort_indices(table.select(list(WINNER_ORDER)), sort_keys=[(c, "ascending") for c in WINNER_ORDER])
    if len(order) <= 1:
        return order, order.slice(0, 0)
    hashes = table.column("content_hash").take(order)
    differs = pc.not_equal(hashes.slice(1), hashes.slice(0, len(order) - 1)).combine_chunks()
    first = pa.concat_arrays([pa.array([True]), differs])
    return order.filter(first), order.filter(pc.invert(first))


def hex_hash(hi: int, lo: int) -> str:
    return f"{int(hi):016x}{int(lo):016x}"


def summary_parts(summary: HashSummary, parts: int = HASH_PARTS) -> Iterator[tuple[tuple[str, int], HashSummary]]:
    """Cut a summary by hash range, so each (split, part) group is a fraction of the split."""
    part_of = (summary.hi % np.uint64(parts)).astype(np.int64)
    is_candidate = np.zeros(len(summary.hi), dtype=bool)
    is_candidate[summary.candidate_index] = True
    for part in np.unique(part_of):
        idx = np.flatnonzero(part_of == part)
        local = np.flatnonzero(is_candidate[idx])
        fields = np.searchsorted(summary.candidate_index, idx[local])
        yield (summary.split, int(part)), HashSummary(
            summary.task, summary.split, summary.hi[idx], summary.lo[idx], local,
            tuple(summary.template_ids[i] for i in fields), tuple(summary.example_ids[i] for i in fields),
            tuple(summary.sample_keys[i] for i in fields),
        )


def decide(
    element: tuple[tuple[str, int], Iterable[HashSummary]], clusters: Mapping[str, str], removed: Mapping[tuple[str, str, str], Any] | None = None
) -> list[beam.pvalue.TaggedOutput]:
    """Cross-cluster winners and surviving capped candidates of one (split, hash range).

    `clusters` maps every task of the build to its cluster; task names order the copies.
    `removed`: (split, task, example id) of examples dropped as near-duplicates or contaminated,
    which the cap must not count on."""
    (split, _), summaries = element
    summaries = [s for s in summaries if len(s.hi)]
    has_candidates = any(len(s.candidate_index) for s in summaries)
    if not summaries or (not has_candidates and len({clusters[s.task] for s in summaries}) == 1):
        return []  # one cluster and nothing capped: the shard writers decide everything
    names = sorted(clusters)
    rank_of = {t: i for i, t in enumerate(names)}
    cluster_names = sorted(set(clusters.values()))
    cluster_of_rank = np.array([cluster_names.index(clusters[t]) for t in names], dtype=np.int64)
    hi = np.concatenate([s.hi for s in summaries])
    lo = np.concatenate([s.lo for s in summaries])
    rank = np.concatenate([np.full(len(s.hi), rank_of[s.task], dtype=np.int64) for s in summaries])
    order = np.lexsort((rank, lo, hi))
    hi_s, lo_s, rank_s = hi[order], lo[order], rank[order]
    new_run = np.ones(len(hi_s), dtype=bool)
    new_run[1:] = (hi_s[1:] != hi_s[:-1]) | (lo_s[1:] != lo_s[:-1])
    starts = np.flatnonzero(new_run)
    cluster_s = cluster_of_rank[rank_s]
    mixed = np.minimum.reduceat(cluster_s, starts) != np.maximum.reduceat(cluster_s, starts)
    out = [
        beam.pvalue.TaggedOutput(CROSS, ((split, hex_hash(hi_s[at], lo_s[at])), cluster_names[cluster_s[at]]))
        for at in starts[mixed]
    ]
    if has_candidates:
        run_of = np.empty(len(hi), dtype=np.int64)
        run_of[order] = np.cumsum(new_run) - 1
        for run, (task, template, key) in _surviving_candidates(summaries, run_of, rank_s[starts], rank_of, split, removed or {}):
            at = starts[run]
            out.append(beam.pvalue.TaggedOutput(SURVIVORS, ((task, split, template), (key, hex_hash(hi_s[at], lo_s[at])))))
    return out


def _surviving_candidates(
    summaries: list[HashSummary], run_of: np.ndarray, winner_rank: np.ndarray, rank_of: Mapping[str, int],
    split: str, removed: Mapping[tuple[str, str, str], Any],
) -> list[tuple[int, tuple[str, str, int]]]:
    """(run, (task, template, key)) of each capped copy that wins its hash run: its task sorts first
    among the copies, and within the task it has the smallest (example_id, template_id)."""
    best: dict[int, tuple[tuple[str, str], tuple[str, str, int]]] = {}
    offset = 0
    for s in summaries:
        r = rank_of[s.task]
        for j, pos in enumerate(s.candidate_index):
            run = int(run_of[offset + pos])
            if winner_rank[run] != r or (split, s.task, s.example_ids[j]) in removed:
                continue  # a copy in a task that sorts earlier wins, or the example is removed
            order_key = (s.example_ids[j], s.template_ids[j])
            if run not in best or order_key < best[run][0]:
                best[run] = (order_key, (s.task, s.template_ids[j], s.sample_keys[j]))
        offset += len(s.hi)
    return [(run, found) for run, (_, found) in sorted(best.items())]


class DedupDecisions(beam.PTransform):
    """Hash summaries -> {"cross": ((split, hash), winning cluster), and with caps, "thresholds":
    ((task, split, template), SampleKey | None) and "totals": ((task, split), surviving candidates)}."""

    def __init__(self, clusters: Mapping[str, str], caps: Mapping[str, int], removed: beam.PCollection | None = None):
        """`caps`: task -> cap of the capped tasks; `removed`: ((split, task, example id), why) of
        examples the shard writers will drop."""
        super().__init__()
        self._clusters = dict(clusters)
        self._caps = dict(caps)
        self._removed = removed

    def expand(self, summaries: beam.PCollection) -> Any:
        side = {} if self._removed is None else {"removed": beam.pvalue.AsDict(self._removed)}
        decided = (
            summaries
            | "ByHashRange" >> beam.FlatMap(summary_parts)
            | "GroupHashes" >> beam.GroupByKey()
            | "Decide" >> beam.FlatMap(decide, clusters=self._clusters, **side).with_outputs(CROSS, SURVIVORS)
        )
        out = {CROSS: decided[CROSS]}
        if self._caps:
            out.update(decided[SURVIVORS] | "Cap" >> CapThresholds(self._caps))
        return out
