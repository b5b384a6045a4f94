"""Dedup and caps: the pure rules, and the DedupDecisions / CapThresholds stages on their own."""
import apache_beam as beam
import pyarrow as pa
from apache_beam.testing.test_pipeline import TestPipeline
from apache_beam.testing.util import assert_that, equal_to
from hypothesis import given
from hypothesis import strategies as st

import numpy as np

from flanforge.beam_pipelines.balance import (
    CapThresholds,
    CountAndSmallest,
    allocate,
    application_key,
    application_keys,
    bottom_k,
    local_quota,
    shard_quotas,
    template_share,
)
from flanforge.beam_pipelines.dedup import CROSS, DedupDecisions, decide, first_copies, summary_parts
from flanforge.beam_pipelines.hashing import content_hash
from flanforge.beam_pipelines.sources import SourceShard
from flanforge.beam_pipelines.spill import HashSummary, hash_halves


def table(rows):
    names = ("task", "example_id", "template_id", "content_hash")
    return pa.table({n: [r[i] for r in rows] for i, n in enumerate(names)})


def test_first_copies_keeps_the_smallest_task_example_template_whatever_the_order():
    h = content_hash("same", "t")
    rows = [("b", "1", "x", h), ("a", "9", "y", h), ("a", "2", "z", h), ("a", "1", "x", content_hash("other", "t"))]
    for ordered in (rows, list(reversed(rows))):
        t = table(ordered)
        kept, dropped = first_copies(t)
        kept_rows = t.take(kept).to_pylist()
        assert [(r["task"], r["example_id"]) for r in kept_rows if r["content_hash"] == h] == [("a", "2")]
        assert len(kept) == 2 and len(dropped) == 2
        assert [r["content_hash"] for r in kept_rows] == sorted(r["content_hash"] for r in kept_rows)


def summary(task, split, hashes, candidates=()):
    """candidates: (position, template, example_id, key)."""
    hi, lo = hash_halves(hashes)
    import numpy as np

    return HashSummary(
        task, split, hi, lo, np.array([c[0] for c in candidates], dtype=np.int64),
        tuple(c[1] for c in candidates), tuple(c[2] for c in candidates), tuple(c[3] for c in candidates),
    )


def test_cross_cluster_copies_are_won_by_the_smallest_task_and_same_cluster_ones_left_to_the_writer():
    shared, only_nli, shared_nli = content_hash("x", "1"), content_hash("y", "2"), content_hash("z", "3")
    clusters = {"rte": "nli", "anli": "nli", "sst2": "sentiment"}
    summaries = [summary("sst2", "train", [shared]), summary("rte", "train", [shared, only_nli, shared_nli]), summary("anli", "train", [shared_nli])]
    out = [o.value for s in summaries for key, part in summary_parts(s) for o in decide(((key[0], 0), [part]), clusters)]
    # decided per group: rebuild one group holding everything, as GroupByKey would for one hash range
    grouped = [o.value for o in decide((("train", 0), summaries), clusters)]
    assert grouped == [(("train", shared), "nli")]  # rte < sst2; anli/rte share a cluster: the writer decides
    assert out == []  # each summary alone has nothing to decide


def test_capped_candidates_survive_only_as_the_winning_copy():
    a, b, c = content_hash("a", "1"), content_hash("b", "1"), content_hash("c", "1")
    clusters = {"cola": "misc", "rte": "nli"}
    rte = summary("rte", "train", [a, a, b, c], candidates=[(0, "t1", "e2", 5), (1, "t2", "e1", 6), (2, "t1", "e3", 7), (3, "t1", "e4", 8)])
    cola = summary("cola", "train", [c])  # cola < rte: rte's copy of c loses
    out = sorted(o.value for o in decide((("train", 0), [rte, cola]), clusters) if o.tag == "survivors")
    assert out == [(("rte", "train", "t1"), (7, b)), (("rte", "train", "t2"), (6, a))]


def test_dedup_decisions_stage_groups_by_hash_range():
    shared = content_hash("x", "1")
    with TestPipeline() as p:
        out = (
            p
            | beam.Create([summary("sst2", "train", [shared, content_hash("q", "2")]), summary("rte", "train", [shared]), summary("rte", "validation", [shared])])
            | DedupDecisions({"rte": "nli", "sst2": "sentiment"}, caps={})
        )
        assert_that(out[CROSS], equal_to([(("train", shared), "nli")]))


@given(st.integers(0, 50), st.dictionaries(st.sampled_from("abcdef"), st.integers(0, 30), min_size=1))
def test_allocate_fills_the_cap_as_evenly_as_counts_allow(cap, counts):
    quotas = allocate(cap, counts)
    assert sum(quotas.values()) == min(cap, sum(counts.values()))
    assert all(0 <= quotas[t] <= counts[t] for t in counts)
    # a template below another's quota by more than one must have run out of rows
    for t in counts:
        for u in counts:
            if quotas[u] - quotas[t] > 1:
                assert quotas[t] == counts[t]


def test_count_and_smallest_merges():
    fn = CountAndSmallest(2)
    a = fn.add_input(fn.add_input(fn.create_accumulator(), (5, "e")), (1, "a"))
    b = fn.add_input(fn.create_accumulator(), (3, "c"))
    assert fn.extract_output(fn.merge_accumulators([a, b])) == (3, [(1, "a"), (3, "c")])


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(0, 5)), max_size=60), st.integers(0, 10))
def test_bottom_k_keeps_the_k_smallest_triples(pairs, k):
    keys = np.array([a for a, _ in pairs], dtype=np.uint64)
    apps = np.array([b for _, b in pairs], dtype=np.int64)
    ordinals = np.arange(len(pairs), dtype=np.int64)
    kept = sorted((a, i, b) for i, (a, b) in enumerate(pairs) if i in set(bottom_k(keys, ordinals, apps, k).tolist()))
    assert kept == sorted((a, i, b) for i, (a, b) in enumerate(pairs))[:k]


@given(st.lists(st.integers(0, 2**64 - 1), max_size=20), st.integers(0, 2**64 - 1))
def test_vectorised_application_keys_equal_the_scalar_ones(rows, salt):
    assert application_keys(np.array(rows, dtype=np.uint64), salt).tolist() == [application_key(r, salt) for r in rows]


def test_local_quota_covers_a_shards_share_with_headroom_and_never_exceeds_twice_the_share():
    share = template_share(30_000, 10)
    assert share == 3000
    assert local_quota(share, 1.0) >= 3000 * 1.15
    assert local_quota(share, 0.01) > 30  # small shards get room for sampling noise
    assert local_quota(share, 1.0) <= 2 * share and local_quota(10, 1.0) <= 20


def test_shard_quotas_follow_each_shards_fraction_of_its_split():
    shards = [
        SourceShard(task="t", split="train", kind="jsonl", location="a.jsonl", start=0, end=300),
        SourceShard(task="t", split="train", kind="jsonl", location="a.jsonl", start=300, end=400),
        SourceShard(task="t", split="validation", kind="jsonl", location="b.jsonl", start=0, end=50),
    ]
    uncapped = [SourceShard(task="u", split="train", kind="jsonl", location="c.jsonl", start=0, end=10)]
    quotas = shard_quotas({"t": shards, "u": uncapped}, {"t": 4, "u": 2}, caps={"t": 400})
    # evaluation splits are never capped, nor is a task without a cap of its own
    assert set(quotas) == {("t", shards[0].key), ("t", shards[1].key)}
    assert quotas[("t", shards[0].key)] == local_quota(100, 0.75) > quotas[("t", shards[1].key)] == local_quota(100, 0.25)
    assert shard_quotas({"t": shards}, {"t": 4}, caps={}) == {}


def test_cap_thresholds_share_the_cap_evenly_between_templates():
    survivors = [((task, "train", f"t{i % 3}"), (i, f"h{i:02d}")) for task in ("a", "b") for i in range(30)]
    with TestPipeline() as p:
        out = p | beam.Create(survivors) | CapThresholds(caps={"a": 7, "b": 20})
        # a: t0 keeps 3 (quota 2 + the leftover), t1 and t2 keep 2: their 3rd / 2nd smallest keys;
        # b, under its own cap of 20: t0 and t1 keep 7, t2 keeps 6
        assert_that(out["thresholds"], equal_to([
            (("a", "train", "t0"), (6, "h06")), (("a", "train", "t1"), (4, "h04")), (("a", "train", "t2"), (5, "h05")),
            (("b", "train", "t0"), (18, "h18")), (("b", "train", "t1"), (19, "h19")), (("b", "train", "t2"), (17, "h17")),
        ]), label="thresholds")
        assert_that(out["totals"], equal_to([(("a", "train"), 30), (("b", "train"), 30)]), label="totals")
