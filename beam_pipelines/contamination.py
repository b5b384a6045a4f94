"""Contamination: training examples that also appear in evaluation data.

Every build compares its train examples with its own evaluation examples (every other split:
validation, test, eval_zeroshot) and, when asked, with external evaluation sets
(`--decontaminate-against PATH#field=NAME`). Two measures, on the slot text of each example
(example_sketches.py; template wording never counts):

  exact   the normalised slot text equals an evaluation example's,
  ngram   the example shares at least one word n-gram (default 13, as GPT-3's decontamination) with one.

The evaluation side becomes an index of 64-bit hashes. When it is small (its source files under
`SIDE_INPUT_MAX_BYTES`) the index is a side input every worker matches against; when it is large,
both sides are cut by hash range and joined, so no worker holds the whole index. Both give the
same findings. The manifest reports per task how many train examples were checked and found;
`--decontaminate` also drops the found examples' records, counted as `contaminated`.
"""
from __future__ import annotations

import collections
from typing import Any, Iterable, Iterator

import apache_beam as beam
import numpy as np

from flanforge.beam_pipelines.catalog import parse_task_spec
from flanforge.beam_pipelines.example_sketches import FileSketch, Ragged
from flanforge.beam_pipelines.sketch import NO_TEXT, exact_hash, ngrams, piece_words
from flanforge.beam_pipelines.sources import SourceRow, SourceShard, plan_files, read_shard, split_source_argument

DEFAULT_NGRAM = 13
SIDE_INPUT_MAX_BYTES = 256 << 20  # evaluation sources above this are joined by hash range instead
JOIN_PARTS = 64
EXTERNAL_SPLIT = "external"
KINDS = ("exact", "ngram")
_EMPTY = np.zeros(0, dtype=np.uint64)
EMPTY_INDEX = {kind: _EMPTY for kind in KINDS}
FOUND = "found"


def is_evaluation(split: str) -> bool:
    return split != "train"


def index_parts(sketch: FileSketch) -> dict[str, np.ndarray]:
    """The hashes an evaluation sketch adds to the index, per measure."""
    assert sketch.exact is not None and sketch.ngrams is not None
    return {"exact": sketch.exact[sketch.exact != NO_TEXT], "ngram": sketch.ngrams.values}


def owners(sketch: FileSketch) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per measure, a train sketch's hashes and the example (index) each belongs to."""
    assert sketch.exact is not None and sketch.ngrams is not None
    return {
        "exact": (sketch.exact, np.arange(len(sketch.exact))),
        "ngram": (sketch.ngrams.values, np.repeat(np.arange(len(sketch.ngrams)), sketch.ngrams.sizes())),
    }


def is_top_up(sketch: FileSketch) -> bool:
    """A top-up spill file repeats examples of its read shard's first pass: checked, never counted twice."""
    return sketch.path.endswith("-top-up.arrow")


def matches(sketch: FileSketch, index: dict[str, np.ndarray]) -> Iterator[Any]:
    """A train sketch against the index: the (task, example id) of every example found (tagged
    FOUND), and the sketch's counts ((task, "contamination@<measure>"), n), not yet summed.
    A top-up file's examples are matched (they may have to be removed) but not counted."""
    hits: dict[int, list[str]] = {}
    for kind, (hashes, owner) in owners(sketch).items():
        for i in np.unique(owner[np.isin(hashes, index[kind])]):
            hits.setdefault(int(i), []).append(kind)
    for i in sorted(hits):
        yield beam.pvalue.TaggedOutput(FOUND, (sketch.task, sketch.example_ids[i]))
    if is_top_up(sketch):
        return
    found = collections.Counter(kind for kinds in hits.values() for kind in kinds)
    yield (sketch.task, "contamination@checked"), len(sketch.example_ids)
    for kind in KINDS:
        if found[kind]:
            yield (sketch.task, f"contamination@{kind}"), found[kind]
    if hits:
        yield (sketch.task, "contamination@contaminated"), len(hits)


class _UnionIndex(beam.CombineFn):
    """Evaluation sketches -> {measure: sorted distinct hashes}."""

    def create_accumulator(self) -> dict[str, list[np.ndarray]]:
        return {k: [] for k in KINDS}

    def add_input(self, acc: dict[str, list[np.ndarray]], sketch: FileSketch) -> dict[str, list[np.ndarray]]:
        for kind, hashes in index_parts(sketch).items():
            acc[kind].append(np.unique(hashes))
        return acc

    def merge_accumulators(self, accs: Iterable[dict[str, list[np.ndarray]]]) -> dict[str, list[np.ndarray]]:
        merged = self.create_accumulator()
        for acc in accs:
            for kind in KINDS:
                merged[kind] += acc[kind]
        return {k: [np.unique(np.concatenate([_EMPTY, *v]))] for k, v in merged.items()}

    def extract_output(self, acc: dict[str, list[np.ndarray]]) -> dict[str, np.ndarray]:
        return {k: np.unique(np.concatenate([_EMPTY, *v])) for k, v in acc.items()}


def hash_range_entries(sketch: FileSketch, parts: int = JOIN_PARTS) -> Iterator[tuple[tuple[str, int], tuple]]:
    """((measure, hash range), entry): evaluation hashes, or train hashes with their examples' ids
    (and whether the file's findings are counted: not a top-up file's)."""
    evaluation = is_evaluation(sketch.split)
    sides = {k: (v, None) for k, v in index_parts(sketch).items()} if evaluation else owners(sketch)
    for kind, (hashes, owner) in sides.items():
        part_of = (hashes % np.uint64(parts)).astype(np.int64)
        for part in np.unique(part_of):
            at = part_of == part
            if evaluation:
                yield (kind, int(part)), ("eval", hashes[at])
            else:
                mine = owner[at]
                yield (kind, int(part)), ("train", sketch.task, [sketch.example_ids[i] for i in mine], hashes[at], not is_top_up(sketch))


def join_range(element: tuple[tuple[str, int], Iterable[tuple]]) -> Iterator[tuple[tuple[str, str], tuple[str, bool]]]:
    """((task, example id), (measure, counted)) for every train example of one hash range found in it."""
    (kind, _), entries = element
    entries = list(entries)
    index = np.unique(np.concatenate([_EMPTY, *(e[1] for e in entries if e[0] == "eval")]))
    if len(index) == 0:
        return
    for entry in entries:
        if entry[0] == "train":
            _, task, ids, hashes, counted = entry
            for i in np.flatnonzero(np.isin(hashes, index)):
                yield (task, ids[i]), (kind, counted)


def example_findings(element: tuple[tuple[str, str], Iterable[tuple[str, bool]]]) -> Iterator[Any]:
    """One found example of the join (all its hash ranges' hits): its key (tagged FOUND) and its counts."""
    key, hits = element
    hits = list(hits)
    yield beam.pvalue.TaggedOutput(FOUND, key)
    if any(counted for _, counted in hits):
        for kind in sorted({kind for kind, _ in hits}):
            yield (key[0], f"contamination@{kind}"), 1
        yield (key[0], "contamination@contaminated"), 1


def checked(sketch: FileSketch) -> Iterator[tuple[tuple[str, str], int]]:
    """How many train examples a sketch checked (the join's count; `matches` counts its own)."""
    if not is_evaluation(sketch.split) and not is_top_up(sketch):
        yield (sketch.task, "contamination@checked"), len(sketch.example_ids)


def external_shards(argument: str, number: int) -> tuple[list[SourceShard], str]:
    """`PATH[#field=NAME,OPTIONS]` -> the read shards of an external evaluation set and its text field
    (default `text`); formats and options as --source takes them."""
    path, fmt, fields = split_source_argument(_without_field(argument))
    field = dict(item.partition("=")[::2] for item in argument.partition("#")[2].split(",") if item.startswith("field=")).get("field", "text")
    spec = parse_task_spec(
        {
            "name": f"decontaminate_against_{number}", "cluster": "misc", "description": f"external evaluation set {path}",
            "license": "n/a", "metric": "accuracy", "source": {"kind": fmt or "jsonl", "splits": {EXTERNAL_SPLIT: path}},
            "fields": {"text": field}, "templates": [{"id": "text", "inputs": "{{ text }}", "targets": "{{ text }}"}],
            "samples": [{field: "-"}],
        },
        f"--decontaminate-against {argument}",
    )
    return plan_files(spec, EXTERNAL_SPLIT, path, fmt, fields), field


def _without_field(argument: str) -> str:
    path, sep, fragment = argument.partition("#")
    rest = [item for item in fragment.split(",") if item and not item.startswith("field=")]
    return path + ("#" + ",".join(rest) if rest else "")


def sketch_external(shard: SourceShard, field: str, n: int) -> Iterator[FileSketch]:
    """An external evaluation file's rows as a sketch (a row without the text field is an error)."""
    texts = []
    for item in read_shard(shard):
        if not isinstance(item, SourceRow):
            raise ValueError(f"--decontaminate-against {shard.location}: {item.where}: {item.error}")
        value = item.row.get(field)
        if not isinstance(value, str):
            raise ValueError(f"--decontaminate-against {shard.location}: row {item.example_id} has no text field {field!r}")
        texts.append(piece_words([value]))
    if texts:
        yield FileSketch(
            shard.location, shard.task, EXTERNAL_SPLIT, [str(i) for i in range(len(texts))],
            exact=np.array([exact_hash(p) for p in texts], dtype=np.uint64), ngrams=Ragged([ngrams(p, n) for p in texts], np.uint64),
        )


class Contamination(beam.PTransform):
    """(own sketches, external sketches) -> {FOUND: (task, example id) of every train example found
    (possibly more than once: a top-up file repeats its shard's examples), "counts": ((task,
    "contamination@<measure>"), n), not yet summed: the build sums every count in one place}."""

    def __init__(self, use_join: bool):
        super().__init__()
        self._use_join = use_join

    def expand(self, inputs: tuple[beam.PCollection, ...]) -> dict[str, beam.PCollection]:
        sketches = inputs | "AllSketches" >> beam.Flatten()
        if self._use_join:
            found = (
                sketches
                | "HashRanges" >> beam.FlatMap(hash_range_entries)
                | "GroupRanges" >> beam.GroupByKey()
                | "JoinRanges" >> beam.FlatMap(join_range)
                | "ByExample" >> beam.GroupByKey()
                | "Findings" >> beam.FlatMap(example_findings).with_outputs(FOUND, main="counts")
            )
            counts = (found["counts"], sketches | "Checked" >> beam.FlatMap(checked)) | "AllCounts" >> beam.Flatten()
            return {FOUND: found[FOUND], "counts": counts}
        # One stage builds the index, one matches: no default value (an empty evaluation side is
        # the empty index) and no grouping by example (each sketch counts its own examples).
        index = (
            sketches
            | "Evaluation" >> beam.Filter(lambda s: is_evaluation(s.split))
            | "Index" >> beam.CombineGlobally(_UnionIndex()).without_defaults()
        )
        found = (
            sketches
            | "Train" >> beam.Filter(lambda s: not is_evaluation(s.split))
            | "Match" >> beam.FlatMap(matches, index=beam.pvalue.AsSingleton(index, default_value=EMPTY_INDEX)).with_outputs(FOUND, main="counts")
        )
        return {FOUND: found[FOUND], "counts": found["counts"]}


def report(counts: Iterable[tuple[tuple[str, str], int]], *, ngram: int, decontaminated: bool, against: Iterable[str]) -> dict[str, Any]:
    """The manifest's `contamination` section from the counts."""
    tasks: dict[str, dict[str, int]] = {}
    for (task, counter), n in counts:
        if counter.startswith("contamination@"):
            tasks.setdefault(task, {"checked": 0, "exact": 0, "ngram": 0, "contaminated": 0})[counter.split("@", 1)[1]] = n
    return {
        "ngram_words": ngram, "decontaminated": decontaminated, "against": list(against), "tasks": dict(sorted(tasks.items())),
    }
