"""NearDuplicates: which examples say almost the same thing as another one of the same split.

From the example sketches (example_sketches.py), in four grouped steps, none of which holds a
split on one worker:

1. LSH: every example's MinHash bands are grouped by (split, band, hash range); examples that
   share a band value are candidates. Each bucket links its members to its first member (by
   task and example id), so a bucket of n examples gives n - 1 candidate pairs, not n^2.
2. Verification: each pair's two shingle sets are fetched from the sketches of the two files
   they came from, and the pair is kept only if their actual Jaccard similarity reaches the
   threshold (MinHash only proposes).
3. Components: the verified pairs of a split are joined into connected components
   (union-find over the pairs: as many as there are near-duplicates, never the split's size),
   and in each component the example that sorts first by (task, example id), the rule exact
   dedup uses, is kept; every record of the others is dropped by the shard writers and counted
   as `near_duplicates`.
4. A sample of the removed pairs, with both examples' slot text, is written for inspection.

Two renderings of one example are never a pair (they are the same example), and examples are
compared within a split only, as exact dedup does, so evaluation data is never thinned by
training data (that is what contamination.py reports).
"""
from __future__ import annotations

import json
from typing import Any, Iterable, Iterator, Mapping

import apache_beam as beam
import numpy as np
import xxhash

from flanforge.beam_pipelines.example_sketches import FileSketch
from flanforge.beam_pipelines.sketch import NearDedupParams, jaccard
from flanforge.beam_pipelines.storage import write_bytes
from flanforge.schemas.files import join_path

Identity = tuple[str, str]  # (task, example_id)
Member = tuple[str, int]  # (spill file, index of the example in its sketch)
BAND_PARTS = 16
LOSERS, PAIRS = "losers", "pairs"
SAMPLE_PAIRS = 200  # removed pairs written per split for inspection


def identities(sketch: FileSketch) -> np.ndarray:
    """A 64-bit stand-in for each example's (task, example id): what the LSH buckets carry."""
    return np.array([xxhash.xxh3_64_intdigest(f"{sketch.task}\x1f{e}".encode()) for e in sketch.example_ids], dtype=np.uint64)


def band_entries(sketch: FileSketch, bands: int, parts: int = BAND_PARTS) -> Iterator[tuple[tuple[str, int, int], tuple]]:
    """((split, band, hash range), (file, example stand-ins, band values, indices)) per band and
    range; examples with no words at all (no shingles) never become candidates."""
    assert sketch.bands is not None and sketch.shingles is not None
    usable = sketch.shingles.sizes() > 0
    ids = identities(sketch)
    for band in range(bands):
        values = sketch.bands[:, band]
        part_of = (values % np.uint64(parts)).astype(np.int64)
        for part in np.unique(part_of[usable]):
            idx = np.flatnonzero(usable & (part_of == part))
            yield (sketch.split, band, int(part)), (sketch.path, ids[idx], values[idx], idx)


def candidate_pairs(element: tuple[tuple[str, int, int], Iterable[tuple]]) -> Iterator[tuple[tuple[str, int, int], tuple[Member, Member]]]:
    """Pairs (first member of a bucket, other member) of every bucket with more than one example,
    keyed (split, stand-in, stand-in); two renders of one example are never a pair."""
    (split, _, _), entries = element
    values, members = [], []
    for path, ids, band_values, idx in entries:
        values.append(band_values)
        members += [(int(i), (path, int(j))) for i, j in zip(ids, idx)]
    if len(members) < 2:
        return
    value = np.concatenate(values)
    order = np.lexsort((np.arange(len(value)), value))
    sorted_values = value[order]
    starts = np.flatnonzero(np.concatenate([[True], sorted_values[1:] != sorted_values[:-1]]))
    ends = np.append(starts[1:], len(order))
    for start, end in zip(starts, ends):
        if end - start < 2:
            continue
        bucket = sorted(members[i] for i in order[start:end])
        first_identity, first_member = bucket[0]
        for identity, member in bucket[1:]:
            if identity != first_identity:
                yield (split, first_identity, identity), (first_member, member)


def first_member(element: tuple[tuple[str, int, int], Iterable[tuple[Member, Member]]]) -> tuple:
    """A pair proposed by several bands (or found in a render and its top-up) is verified once."""
    key, members = element
    return key, min(members)


def requests(element: tuple[tuple[str, Identity, Identity], tuple[Member, Member]]) -> Iterator[tuple[str, tuple]]:
    """Ask each side's spill file for that example's shingles."""
    pair, (a, b) = element
    yield a[0], (pair, 0, a[1])
    yield b[0], (pair, 1, b[1])


def answer_requests(element: tuple[str, Mapping[str, list]]) -> Iterator[tuple[tuple, tuple[int, np.ndarray, str]]]:
    _, groups = element
    if not groups["sketch"]:
        return
    sketch: FileSketch = groups["sketch"][0]
    assert sketch.shingles is not None
    for pair, side, index in groups["want"]:
        yield pair, (side, (sketch.task, sketch.example_ids[index]), sketch.shingles[index], sketch.texts[index])


def verify(element: tuple[tuple[str, int, int], Iterable[tuple]], threshold: float) -> Iterator[tuple[str, dict[str, Any]]]:
    """A verified pair as {a, b, jaccard, texts}, a before b in the winner order."""
    (split, _, _), sides = element
    (_, id_a, set_a, text_a), (_, id_b, set_b, text_b) = sorted(sides, key=lambda s: s[1])
    similarity = jaccard(set_a, set_b)
    if similarity >= threshold:
        yield split, {"a": list(id_a), "b": list(id_b), "jaccard": round(similarity, 4), "text_a": text_a, "text_b": text_b}


def components(pairs: Iterable[tuple[Identity, Identity]]) -> dict[Identity, Identity]:
    """loser -> its component's winner (the smallest identity), for every example in a component."""
    parent: dict[Identity, Identity] = {}

    def root(x: Identity) -> Identity:
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in pairs:
        ra, rb = root(a), root(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {x: root(x) for x in sorted(parent) if root(x) != x}


def choose_winners(element: tuple[str, Iterable[dict[str, Any]]]) -> Iterator[Any]:
    """Losers of one split as ((split, task, example id), winner), and a sample of removed pairs."""
    split, found = element
    found = sorted(found, key=lambda p: (p["a"], p["b"]))
    winners = components((tuple(p["a"]), tuple(p["b"])) for p in found)
    for (task, example_id), winner in winners.items():
        yield beam.pvalue.TaggedOutput(LOSERS, ((split, task, example_id), list(winner)))
    sample = [p for p in found if tuple(p["b"]) in winners][:SAMPLE_PAIRS]
    if sample:
        yield beam.pvalue.TaggedOutput(PAIRS, (split, sample))


def sample_path(split: str) -> str:
    return f"near_duplicates/{split}.jsonl"


def write_sample(element: tuple[str, list[dict[str, Any]]], root: str) -> Iterator[dict[str, Any]]:
    split, pairs = element
    body = "".join(json.dumps({"split": split, **p}, ensure_ascii=False, sort_keys=True) + "\n" for p in pairs)
    rel = sample_path(split)
    digest = write_bytes(join_path(root, rel), body.encode("utf-8"))
    yield {"path": rel, "split": split, "rows": len(pairs), "sha256": digest}


class NearDuplicates(beam.PTransform):
    """FileSketches -> {"losers": ((split, task, example_id), winner identity), "samples": sample file infos}."""

    def __init__(self, params: NearDedupParams, root: str):
        super().__init__()
        self._params = params
        self._root = root

    def expand(self, sketches: beam.PCollection) -> dict[str, beam.PCollection]:
        params, root = self._params, self._root
        pairs = (
            sketches
            | "Bands" >> beam.FlatMap(band_entries, bands=params.bands)
            | "GroupBands" >> beam.GroupByKey()
            | "Candidates" >> beam.FlatMap(candidate_pairs)
            | "GroupPairs" >> beam.GroupByKey()
            | "OncePerPair" >> beam.Map(first_member)
        )
        shingles = (
            {"sketch": sketches | "ByFile" >> beam.Map(lambda s: (s.path, s)), "want": pairs | "Requests" >> beam.FlatMap(requests)}
            | "JoinFiles" >> beam.CoGroupByKey()
            | "Shingles" >> beam.FlatMap(answer_requests)
        )
        decided = (
            shingles
            | "GroupSides" >> beam.GroupByKey()
            | "Verify" >> beam.FlatMap(verify, threshold=params.threshold)
            | "BySplit" >> beam.GroupByKey()
            | "Components" >> beam.FlatMap(choose_winners).with_outputs(LOSERS, PAIRS)
        )
        samples = decided[PAIRS] | "WriteSamples" >> beam.FlatMap(write_sample, root=root)
        return {LOSERS: decided[LOSERS], "samples": samples}
