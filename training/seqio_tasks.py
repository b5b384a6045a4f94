"""A flanforge build as seqio Tasks and a Mixture, for T5X / t5.data style trainers.

One seqio Task per flanforge task, for evaluating or reading a task on its own: each reads its
cluster's TFRecord shards (they are partitioned by split and cluster, not by task) and keeps the
records whose `task` feature is its own.

The Mixture is not made of those: mixing a cluster's tasks as Tasks of their own would read its
shards once per task (Flan 2022's NIv2 cluster has ~1,600). It mixes one training Task per
cluster, `<prefix>cluster:<cluster>`, that reads the cluster's train shards once an epoch and
yields each record as many times, in expectation, as its task's rate asks (training/data.py's
`row_factors`, the rule `flanforge train` samples by), the fraction by a seeded draw; each
cluster Task's rate is the sum of its tasks' rates. A task's rate is the manifest's
`mixing_weight` (min(train examples, the build's rate cap)), normalised, or, for a build whose
recipe weighs collections, each collection's weight shared by its tasks in proportion to their
mixing weights: the manifest's per-task `rate` (docs/COLLECTIONS.md). Every split the build wrote
for a task is a split of its Task: `train`, `validation`, and `eval_zeroshot` for the tasks of
held-out clusters (registered, never mixed).

The plan (names, shard files per split, rates, per-task factors) is a pure function of the
manifest, so it is tested without seqio; seqio and TensorFlow are imported only when registering.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Any

from flanforge.schemas.manifest import Manifest
from flanforge.training.data import (
    TRAIN_SPLIT,
    DataError,
    manifest_collections,
    manifest_mixing_weights,
    mixture_weights,
    open_corpus,
    row_factors,
    task_sizes,
)

FORMAT = "tfrecord"  # the format seqio reads natively (TFExampleDataSource)
TEXT_FEATURES = ("inputs", "targets")
# seqio's own rule for provider names (dataset_providers._VALID_TASK_NAME_REGEX)
SEQIO_NAME = re.compile(r"^[\w.:#]+$")


@dataclass(frozen=True)
class SeqioTask:
    name: str  # the seqio name: prefix + task
    task: str  # the flanforge task, the value of each record's `task` feature
    files: dict[str, tuple[str, ...]]  # split -> its cluster's shard URIs in that split


@dataclass(frozen=True)
class SeqioCluster:
    name: str  # the seqio name: prefix + "cluster:" + cluster
    cluster: str
    files: tuple[str, ...]  # the cluster's train shard URIs
    factors: dict[str, float]  # task -> how many times each of its records is yielded, in expectation


@dataclass(frozen=True)
class SeqioPlan:
    mixture: str
    tasks: tuple[SeqioTask, ...]
    clusters: tuple[SeqioCluster, ...]  # the Mixture's Tasks
    rates: dict[str, float]  # cluster Task name -> its rate in the Mixture (sums to 1)
    task_rates: dict[str, float]  # flanforge task -> the rate it is drawn at (tasks with train data only)


def plan_corpus(manifest: Manifest, *, prefix: str = "flanforge_") -> SeqioPlan:
    """The Tasks and Mixture a build becomes; raises DataError on a name seqio would refuse."""
    shards = manifest.shards_for(fmt=FORMAT)
    if not shards:
        raise DataError(f"{manifest.root} has no {FORMAT} shards; seqio reads those (build with --formats {FORMAT})")
    by_cluster: dict[str, dict[str, list[str]]] = {}
    for s in sorted(shards, key=lambda s: s.path):
        by_cluster.setdefault(s.cluster, {}).setdefault(s.split, []).append(manifest.uri(s.path))
    tasks = []
    for task, entry in sorted(manifest.tasks.items()):
        written = entry.written_by_split  # empty in builds that predate it: then every split of the cluster
        files = {split: tuple(uris) for split, uris in sorted(by_cluster.get(entry.cluster, {}).items())
                 if not written or written.get(split, 0) > 0}
        if files:
            tasks.append(SeqioTask(_seqio_name(prefix + task), task, files))
    train_shards = manifest.shards_for(fmt=FORMAT, splits=[TRAIN_SPLIT])
    if not train_shards:
        raise DataError(f"{manifest.root} has no {TRAIN_SPLIT} shards to mix")
    collection_of, collection_weights = manifest_collections(manifest)
    sizes = task_sizes(manifest, train_shards)
    weights = mixture_weights(
        sizes, rate_cap=None, explicit=manifest_mixing_weights(manifest), collection_of=collection_of, collection_weights=collection_weights,
    )
    clusters = []
    for cluster in sorted({manifest.tasks[t].cluster for t in weights}):
        mine = {t: w for t, w in weights.items() if manifest.tasks[t].cluster == cluster}
        files = tuple(manifest.uri(s.path) for s in sorted(train_shards, key=lambda s: s.path) if s.cluster == cluster)
        clusters.append(SeqioCluster(_seqio_name(f"{prefix}cluster:{cluster}"), cluster, files, row_factors(mine, sizes)))
    rates = {c.name: sum(weights[t] for t in c.factors) for c in clusters}
    return SeqioPlan(_seqio_name(prefix + "mixture"), tuple(tasks), tuple(clusters), rates, dict(weights))


def _seqio_name(name: str) -> str:
    if not SEQIO_NAME.match(name):
        raise DataError(f"seqio name {name!r}: seqio allows only letters, digits and _ . : # (choose another prefix)")
    return name


def register_corpus(root: str, *, vocabulary: Any = None, prefix: str = "flanforge_") -> str:
    """Register the build at `root` (a directory or gs:// prefix) with seqio; returns the Mixture's name.

    `vocabulary`: a seqio.Vocabulary or the path of a SentencePiece model; the Tasks then
    tokenize `inputs` and `targets` and append EOS (seqio's usual int32 features). Without one
    they yield the two texts as scalar strings, for a trainer that tokenizes itself. Registering
    the same names again replaces them, so a notebook can re-run it.
    """
    import seqio

    plan = plan_corpus(open_corpus(root, FORMAT), prefix=prefix)
    features, steps = _features(seqio, vocabulary)
    spec = _source_spec()
    for t in plan.tasks:
        seqio.TaskRegistry.remove(t.name)
        seqio.TaskRegistry.add(
            t.name,
            source=seqio.TFExampleDataSource({split: list(files) for split, files in t.files.items()}, feature_description=spec),
            output_features=features,
            preprocessors=[functools.partial(only_task, task=t.task), *steps],
        )
    for c in plan.clusters:
        seqio.TaskRegistry.remove(c.name)
        seqio.TaskRegistry.add(
            c.name,
            source=seqio.TFExampleDataSource({TRAIN_SPLIT: list(c.files)}, feature_description=spec),
            output_features=features,
            preprocessors=[functools.partial(at_task_rates, factors=c.factors), *steps],
        )
    seqio.MixtureRegistry.remove(plan.mixture)
    seqio.MixtureRegistry.add(plan.mixture, list(plan.rates.items()))
    return plan.mixture


def _features(seqio: Any, vocabulary: Any) -> tuple[dict[str, Any], list[Any]]:
    """Output features and the preprocessing steps after the task filter."""
    if vocabulary is None:
        import tensorflow as tf

        text = seqio.Feature(seqio.PassThroughVocabulary(size=0), add_eos=False, dtype=tf.string, rank=0)
        return {name: text for name in TEXT_FEATURES}, []
    if isinstance(vocabulary, str):
        vocabulary = seqio.SentencePieceVocabulary(vocabulary)
    tokens = seqio.Feature(vocabulary, add_eos=True)
    return {name: tokens for name in TEXT_FEATURES}, [seqio.preprocessors.tokenize, seqio.preprocessors.append_eos_after_trim]


def _source_spec() -> dict[str, Any]:
    from flanforge.schemas.records import tf_feature_spec

    return {k: v for k, v in tf_feature_spec().items() if k in (*TEXT_FEATURES, "task")}


def only_task(dataset: Any, task: str) -> Any:
    """seqio preprocessor: the records of one task (its cluster's shards hold its neighbours too), as inputs/targets."""
    import tensorflow as tf

    kept = dataset.filter(lambda ex: tf.equal(ex["task"], task))
    return kept.map(lambda ex: {name: ex[name] for name in TEXT_FEATURES}, num_parallel_calls=tf.data.AUTOTUNE)


def at_task_rates(dataset: Any, factors: dict[str, float]) -> Any:
    """seqio preprocessor of a cluster Task: each record as inputs/targets, yielded floor(f) times
    and once more with probability frac(f), f its task's factor (0 for a task outside the mix).
    The draw is seqio's per-record seed (map_over_dataset), so a seeded get_dataset repeats."""
    import seqio
    import tensorflow as tf

    table = tf.lookup.StaticHashTable(
        tf.lookup.KeyValueTensorInitializer(tf.constant(sorted(factors)), tf.constant([factors[t] for t in sorted(factors)], tf.float64)),
        default_value=tf.constant(0.0, tf.float64),
    )

    @seqio.map_over_dataset(num_seeds=1)
    def with_copies(ex: dict, seed: Any) -> dict:
        factor = table.lookup(ex["task"])
        whole = tf.floor(factor)
        extra = tf.random.stateless_uniform([], seed=seed, dtype=tf.float64) < factor - whole
        return {**{name: ex[name] for name in TEXT_FEATURES}, "copies": tf.cast(whole, tf.int64) + tf.cast(extra, tf.int64)}

    def repeated(ex: dict) -> Any:
        return tf.data.Dataset.from_tensors({name: ex[name] for name in TEXT_FEATURES}).repeat(ex["copies"])

    return with_copies(dataset).flat_map(repeated)
