"""Balance: cap each task's training examples, keeping templates even, and render only what can be kept.

The rule (docs/ARCHITECTURE.md, "Caps"):

1. Every template application of a capped split gets a sampling key before anything is rendered:
   a seeded hash of (task, example id, template, variant), so it is known the moment a row is read.
2. Each read shard renders, per template, only its `local_quota` smallest keys: its share of
   `ceil(cap / templates)` by the shard's fraction of the task's input, with headroom for
   duplicates. Everything else is counted as capped without being rendered. (The shard is read
   twice: once to compute the keys, vectorised, and once to render the chosen applications.)
3. After dedup, `allocate` shares the cap between templates by water-filling over the surviving
   candidates, and each template keeps its `quota` smallest keys (bottom-k: `threshold`).
4. Top-up: if a task's survivors fall short of the cap while rows were left unrendered, its
   shards are read again and every application left out in step 2 is rendered, once; step 3
   then runs over everything, so the written count is min(cap, what the source gives after dedup).

Only hashes, keys and counts cross workers for this; rows never move. The kept set depends on the
seed, the spec, the source and its plan, never on the runner or the worker count.
"""
from __future__ import annotations

import heapq
import math
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np

from flanforge.beam_pipelines.hashing import seeded_hash
from flanforge.beam_pipelines.layout import shard_weight
from flanforge.beam_pipelines.sources import SourceShard

SampleKey = tuple[int, str]  # (application key, content hash): unique within a split after dedup
KEEP_NONE: SampleKey = (-1, "")  # below every real key
DUPLICATE_HEADROOM = 1.15  # candidates rendered per kept record, so dedup rarely forces a top-up


_MASK64 = (1 << 64) - 1


def row_key(seed: int, task: str, example_id: str) -> int:
    return seeded_hash(seed, "cap", task, example_id)


def application_salt(seed: int, template_id: str, variant: str) -> int:
    return seeded_hash(seed, "cap-application", template_id, variant)


def application_key(row: int, salt: int) -> int:
    """The sampling key of one template application, known before it is rendered: the row's key
    and the application's salt mixed by splitmix64's finaliser (a bijection, so distinct inputs
    give distinct keys), which costs a few integer operations instead of a hash per application."""
    z = row ^ salt
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def application_keys(rows: np.ndarray, salt: int) -> np.ndarray:
    """`application_key` over an array of row keys (uint64 arithmetic wraps as the & does above)."""
    z = rows ^ np.uint64(salt)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def bottom_k(keys: np.ndarray, ordinals: np.ndarray, apps: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k smallest (key, ordinal, application) triples: a total order, so ties
    between keys (as good as impossible) still resolve the same way everywhere."""
    if len(keys) <= k:
        return np.arange(len(keys))
    return np.lexsort((apps, ordinals, keys))[:k]


def template_share(cap: int, templates: int) -> int:
    return math.ceil(cap / max(1, templates))


def local_quota(share: int, fraction: float) -> int:
    """Candidates a read shard renders per template: its expected share of the kept rows, plus
    headroom for duplicates and four standard deviations of sampling noise."""
    expected = share * min(1.0, max(0.0, fraction))
    return min(share * 2, math.ceil(expected * DUPLICATE_HEADROOM + 4 * math.sqrt(expected) + 8))


def allocate(cap: int, counts: Mapping[str, int]) -> dict[str, int]:
    """Split `cap` rows between templates as evenly as their counts allow.

    Every template gets min(count, q) for the largest common quota q that fits; the rows left
    over go one each to the templates that still have rows, in template-id order.
    """
    if sum(counts.values()) <= cap:
        return dict(counts)
    lo, hi = 0, max(counts.values())
    while lo < hi:  # largest q with sum(min(c, q)) <= cap
        mid = (lo + hi + 1) // 2
        if sum(min(c, mid) for c in counts.values()) <= cap:
            lo = mid
        else:
            hi = mid - 1
    quotas = {t: min(c, lo) for t, c in counts.items()}
    left = cap - sum(quotas.values())
    for t in sorted(counts):
        if left == 0:
            break
        if counts[t] > quotas[t]:
            quotas[t] += 1
            left -= 1
    return quotas


def threshold(quota: int, count: int, smallest: list[SampleKey]) -> SampleKey | None:
    """Largest key to keep (None = keep all) given a template's quota and its smallest keys."""
    if quota >= count:
        return None
    return KEEP_NONE if quota == 0 else smallest[quota - 1]


class CountAndSmallest(beam.CombineFn):
    """(row count, the k smallest sample keys, sorted) of a group; holds at most 2k keys."""

    def __init__(self, k: int):
        self._k = k

    def create_accumulator(self) -> tuple[int, list[SampleKey]]:
        return 0, []

    def add_input(self, acc: tuple[int, list[SampleKey]], key: SampleKey) -> tuple[int, list[SampleKey]]:
        n, keys = acc
        keys.append(key)
        if len(keys) >= 2 * self._k:
            keys = heapq.nsmallest(self._k, keys)
        return n + 1, keys

    def merge_accumulators(self, accs: Iterable[tuple[int, list[SampleKey]]]) -> tuple[int, list[SampleKey]]:
        accs = list(accs)
        return sum(n for n, _ in accs), heapq.nsmallest(self._k, (k for _, keys in accs for k in keys))

    def extract_output(self, acc: tuple[int, list[SampleKey]]) -> tuple[int, list[SampleKey]]:
        n, keys = acc
        return n, heapq.nsmallest(self._k, keys)


def thresholds_for_task(caps: Mapping[str, int], element: tuple[tuple[str, str], Iterable[tuple[str, int, list]]]) -> Iterator[tuple]:
    (task, split), stats = element
    stats = list(stats)
    quotas = allocate(caps[task], {template: n for template, n, _ in stats})
    for template, n, smallest in stats:
        yield (task, split, template), threshold(quotas[template], n, smallest)


class CapThresholds(beam.PTransform):
    """Surviving candidates ((task, split, template), SampleKey) -> the kept-key threshold of each
    (task, split, template) (main) and each (task, split)'s survivor total ("totals"), under each
    task's cap (`caps`: task -> cap)."""

    def __init__(self, caps: Mapping[str, int]):
        super().__init__()
        self._caps = dict(caps)

    def expand(self, survivors: beam.PCollection) -> Any:
        caps = self._caps
        # A combiner does not see its key, so every group keeps the largest cap's worth of smallest
        # keys: enough for any task's quota (a template's quota never exceeds its task's cap).
        stats = (
            survivors
            | "CountAndSmallest" >> beam.CombinePerKey(CountAndSmallest(max(caps.values())))
            | "ByTask" >> beam.Map(lambda kv: ((kv[0][0], kv[0][1]), (kv[0][2], kv[1][0], kv[1][1])))
            | "GroupTemplates" >> beam.GroupByKey()
        )
        return {
            "thresholds": stats | "Thresholds" >> beam.FlatMap(lambda kv: thresholds_for_task(caps, kv)),
            "totals": stats | "Totals" >> beam.MapTuple(lambda key, templates: (key, sum(n for _, n, _ in templates))),
        }


def shard_quotas(
    shards: Mapping[str, list[SourceShard]], templates: Mapping[str, int], caps: Mapping[str, int], capped_splits: Iterable[str] = ("train",)
) -> dict[tuple[str, str], int]:
    """(task, read shard key) -> how many candidates per template that shard renders (capped tasks'
    capped splits only; `caps`: task -> cap).

    A shard's fraction of its task's split comes from the plan (bytes or rows), so it is known before
    anything is read and is the same on every runner."""
    quotas = {}
    for task, planned in sorted(shards.items()):
        if task not in caps:
            continue
        share = template_share(caps[task], templates[task])
        for split in capped_splits:
            group = [s for s in planned if s.split == split]
            weights = [max(0, shard_weight(s)[0]) for s in group]
            total = sum(weights)
            for s, w in zip(group, weights):
                quotas[(task, s.key)] = local_quota(share, w / total if total else 1 / len(group))
    return quotas
