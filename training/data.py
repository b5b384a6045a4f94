"""From a build's manifest to the examples the trainer sees.

manifest.json -> the shards it lists (verified before any training starts) -> one endless,
seeded stream per cluster, reading each shard once an epoch and yielding each task's rows at its
rate -> a mixture of those streams that draws every task at its weight.

Everything here is plain Python + pyarrow, so the trainer reads Parquet shards on a machine with
neither Beam nor TensorFlow (JAX or torch); TFRecord shards go through tf.data only when asked for.
Every stream's position is a few integers, so a checkpoint can record exactly where the data was
and a resumed run continues with the very next example.
"""
from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Mapping

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from flanforge.schemas.records import EVAL_ZEROSHOT, FORMATS
from flanforge.schemas.files import open_filesystem
from flanforge.schemas.manifest import Manifest, ManifestError, ShardInfo, mixing_rates, read_manifest, verify_shards
from flanforge.training.errors import TrainingInputError

TRAIN_SPLIT = "train"
# Held-out clusters are written to eval_zeroshot; older builds only have validation.
EVAL_SPLITS = (EVAL_ZEROSHOT, "validation")
TRAIN_COLUMNS = ("inputs", "targets", "task")
# Cluster choices are drawn in blocks so that the cluster of example i is a pure function of (seed, i).
MIXTURE_BLOCK = 4096
MIXING_METHODS = ("examples_proportional", "equal")


class DataError(TrainingInputError):
    """The corpus or the selection asked of it cannot give a sound training run."""


@dataclass(frozen=True)
class Example:
    inputs: str
    targets: str
    task: str


def open_corpus(uri: str, fmt: str) -> Manifest:
    """Read DIR/manifest.json and check the build has shards in `fmt`."""
    if fmt not in FORMATS:
        raise DataError(f"--format {fmt}: choose from {', '.join(FORMATS)}")
    manifest = read_manifest(uri)
    if not manifest.shards_for(fmt=fmt):
        have = sorted({s.format for s in manifest.shards}) or ["none"]
        raise DataError(f"{uri} has no {fmt} shards (it has: {', '.join(have)}); pass --format accordingly")
    return manifest


def check_clusters(manifest: Manifest, clusters: Iterable[str]) -> None:
    """Fail on a cluster name the build does not know (a typo would silently hold out nothing)."""
    unknown = sorted(set(clusters) - set(manifest.clusters))
    if unknown:
        raise DataError(
            f"cluster(s) not in {manifest.root}/manifest.json: {', '.join(unknown)}; "
            f"the build has: {', '.join(sorted(manifest.clusters))}"
        )


def train_shards(manifest: Manifest, fmt: str, holdout: Iterable[str]) -> list[ShardInfo]:
    """The training shards of every cluster that is not held out."""
    kept = sorted(set(manifest.clusters) - set(holdout))
    shards = manifest.shards_for(fmt=fmt, splits=[TRAIN_SPLIT], clusters=kept)
    if not shards:
        raise DataError(f"no {TRAIN_SPLIT} shards left to train on after holding out {', '.join(sorted(holdout))}")
    return shards


def eval_split(manifest: Manifest) -> str:
    """eval_zeroshot when the build wrote one, else validation."""
    present = {s.split for s in manifest.shards}
    for split in EVAL_SPLITS:
        if split in present:
            return split
    raise DataError(f"{manifest.root} has no {' or '.join(EVAL_SPLITS)} split to evaluate on (splits: {', '.join(sorted(present))})")


def verify_shard_files(manifest: Manifest, shards: Iterable[ShardInfo], *, check_sha256: bool = False) -> None:
    """Check every shard exists with the manifest's size (and row count, for Parquet from its footer).

    Only metadata is read, so this is cheap on gs:// too; sha256 needs the whole file and is opt-in.
    """
    shards = list(shards)
    for s in shards:
        uri = manifest.uri(s.path)
        fs, path = open_filesystem(uri)
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.NotFound:
            raise ManifestError(f"shard listed in the manifest is missing: {uri}")
        if info.size != s.bytes:
            raise ManifestError(f"shard {uri} has {info.size} bytes, the manifest says {s.bytes}")
        if s.format == "parquet":
            with fs.open_input_file(path) as f:
                rows = pq.ParquetFile(f).metadata.num_rows
            if rows != s.rows:
                raise ManifestError(f"shard {uri} has {rows} rows, the manifest says {s.rows}")
    if check_sha256:
        verify_shards(manifest, shards, check_sha256=True)


def read_output_shard(manifest: Manifest, shard: ShardInfo, columns: Iterable[str]) -> pa.Table:
    """One shard as an Arrow table with `columns`; TFRecord rows are also counted against the manifest."""
    columns = list(columns)
    uri = manifest.uri(shard.path)
    if shard.format == "parquet":
        fs, path = open_filesystem(uri)
        return pq.read_table(path, columns=columns, filesystem=fs)
    table = read_tfrecord(uri, columns)
    if table.num_rows != shard.rows:
        raise ManifestError(f"shard {uri} has {table.num_rows} records, the manifest says {shard.rows}")
    return table


def read_tfrecord(uri: str, columns: list[str]) -> pa.Table:
    """A TFRecord shard through tf.data (TensorFlow is imported only here)."""
    import tensorflow as tf

    from flanforge.schemas.records import arrow_schema, tf_feature_spec

    spec = {k: v for k, v in tf_feature_spec().items() if k in columns}
    schema = arrow_schema()
    values: dict[str, list] = {c: [] for c in columns}
    for record in tf.data.TFRecordDataset(uri):
        parsed = tf.io.parse_single_example(record, spec)
        for c in columns:
            v = parsed[c]
            if isinstance(v, tf.SparseTensor):
                values[c].append([b.decode() for b in v.values.numpy()])
            elif v.dtype == tf.string:
                values[c].append(v.numpy().decode())
            else:
                values[c].append(int(v.numpy()))
    return pa.table({c: pa.array(values[c], type=schema.field(c).type) for c in columns})


def task_sizes(manifest: Manifest, shards: list[ShardInfo]) -> dict[str, int]:
    """Training examples per task in `shards`: the manifest's written_by_split, else (older builds) counted."""
    clusters = {s.cluster for s in shards}
    tasks = {t: e for t, e in manifest.tasks.items() if e.cluster in clusters}
    if any(e.written_by_split for e in tasks.values()):
        return {t: e.written_by_split.get(TRAIN_SPLIT, 0) for t, e in sorted(tasks.items())}
    counts: dict[str, int] = {}
    for s in shards:
        for task, n in pc.value_counts(read_output_shard(manifest, s, ["task"]).column("task")).to_pylist():
            counts[task] = counts.get(task, 0) + n
    return dict(sorted(counts.items()))


def mixture_weights(
    sizes: Mapping[str, int],
    *,
    method: str = "examples_proportional",
    rate_cap: int | None = None,
    temperature: float = 1.0,
    explicit: Mapping[str, float] | None = None,
    collection_of: Mapping[str, str] | None = None,
    collection_weights: Mapping[str, float] | None = None,
) -> dict[str, float]:
    """Sampling probability per task.

    examples_proportional (FLAN): the manifest's `mixing_weight` where the build set one (already
    min(n, the build's cap)), else n, each also bounded by `rate_cap` when given, so a huge task
    cannot swamp the rest; with `collection_weights` (a
    recipe's `collections:`, from manifest_collections) each collection then gets its weight,
    shared by its tasks in proportion to those rates (schemas.manifest.mixing_rates, the function
    the build recorded each task's `rate` with); then rate ** (1 / temperature), normalised.
    Tasks with no examples get no weight; `equal` ignores collections.
    """
    if method not in MIXING_METHODS:
        raise DataError(f"--mixing {method}: choose from {', '.join(MIXING_METHODS)}")
    if temperature <= 0:
        raise DataError("--temperature must be positive")
    if rate_cap is not None and rate_cap < 1:
        raise DataError("--rate-cap must be at least 1")
    explicit = explicit or {}
    rates: dict[str, float] = {}
    for task, n in sorted(sizes.items()):
        if n <= 0:
            continue
        if method == "equal":
            rates[task] = 1.0
        elif task in explicit:  # the build's weight, still bounded by this run's --rate-cap
            rates[task] = float(min(explicit[task], rate_cap) if rate_cap else explicit[task])
        else:
            rates[task] = float(min(n, rate_cap) if rate_cap else n)
    if method != "equal" and collection_weights:
        try:
            rates = mixing_rates(rates, collection_of or {}, collection_weights)
        except ValueError as e:
            raise DataError(f"the manifest's collections do not cover its tasks: {e}") from None
    scaled = {t: r ** (1.0 / temperature) for t, r in rates.items()}
    total = sum(scaled.values())
    if total <= 0:
        raise DataError("no training examples to mix: every selected task is empty")
    return {t: v / total for t, v in scaled.items()}


def manifest_mixing_weights(manifest: Manifest) -> dict[str, float]:
    """Per-task `mixing_weight` the build recorded: min(train examples, its rate cap); 0 = no train data."""
    return {t: e.mixing_weight for t, e in manifest.tasks.items() if e.mixing_weight > 0}


def manifest_collections(manifest: Manifest) -> tuple[dict[str, str], dict[str, float]]:
    """(task -> its collection, collection -> the recipe's weight): what mixture_weights needs to
    mix as the build did; no weights for a build without `collections:` (or older than them)."""
    weights = {c: float(s["weight"]) for c, s in manifest.collections.items() if s.get("weight") is not None}
    return {t: e.collection for t, e in manifest.tasks.items()}, weights


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng([k & 0xFFFFFFFF for k in key])


def _stable_id(name: str) -> int:
    return zlib.crc32(name.encode())


@dataclass
class StreamPosition:
    """Where a cluster stream is: epoch, index into that epoch's shard order, row within the shard."""

    epoch: int = 0
    shard: int = 0
    row: int = 0


ShardReader = Callable[[ShardInfo], pa.Table]


@dataclass(frozen=True)
class ShardRows:
    """One shard's training columns, each row's task as a code into `task_names`."""

    inputs: pa.Array
    targets: pa.Array
    task_codes: np.ndarray
    task_names: list[str]

    @classmethod
    def of(cls, table: pa.Table) -> "ShardRows":
        tasks = pc.dictionary_encode(table.column("task").combine_chunks())
        return cls(
            table.column("inputs").combine_chunks(), table.column("targets").combine_chunks(),
            tasks.indices.to_numpy(zero_copy_only=False), tasks.dictionary.to_pylist(),
        )

    def example(self, i: int) -> Example:
        return Example(self.inputs[i].as_py(), self.targets[i].as_py(), self.task_names[self.task_codes[i]])


def row_factors(weights: Mapping[str, float], sizes: Mapping[str, int]) -> dict[str, float]:
    """How many times a cluster stream yields each row of a task, in expectation, so that over an
    epoch the task is its weight's share of the cluster: (w_t / n_t) / (W / N) (ClusterStream)."""
    mean = sum(weights.values()) / sum(sizes[t] for t in weights)
    return {t: (w / sizes[t]) / mean for t, w in weights.items()}


class ClusterStream:
    """An endless, seeded stream of one cluster's examples, each task at its share of the mixture.

    Records are routed to shards by content hash, so every task of a cluster has rows in every
    shard of it: a stream per task would read the cluster once per task (Flan 2022's NIv2 cluster
    has ~1,600 tasks, one per task file). This stream reads each shard once an epoch and meets the
    tasks' rates by how often it yields each row instead: a row of task t is yielded
    f_t = (w_t / n_t) / (W / N) times in expectation (w_t the task's mixture weight, n_t its rows;
    W and N the cluster's sums), the whole part always and the fraction by a seeded draw. Over an
    epoch task t is then w_t / W of the stream, what a stream per task sampled at w_t would give;
    with examples-proportional weights every f_t is 1 and an epoch is every row once.

    Epoch e visits the shards in an order seeded by (seed, cluster, e), and each shard's yielded rows
    in an order seeded by (seed, cluster, e, shard), so the position alone determines every later
    example. Only the current shard is in memory.
    """

    def __init__(self, cluster: str, shards: list[ShardInfo], reader: ShardReader, weights: Mapping[str, float], sizes: Mapping[str, int], seed: int):
        empty = sorted(t for t in weights if sizes.get(t, 0) <= 0)
        if not shards or empty:
            raise DataError(f"cluster {cluster}: {'no shards' if not shards else 'no rows for weighted task(s) ' + ', '.join(empty)}")
        self.cluster = cluster
        self.position = StreamPosition()
        self._shards = sorted(shards, key=lambda s: s.path)
        self._reader = reader
        self._seed = seed
        self._factor = row_factors(weights, sizes)
        self.tasks = frozenset(self._factor)
        self._found: set[str] = set()  # tasks met in epoch 0: each weighted one must be somewhere,
        self._searched: set[int] = set()  # ... once this process has read every shard of epoch 0
        self._loaded: tuple[tuple[int, int], ShardRows, np.ndarray] | None = None

    def _rows(self, epoch: int, shard_index: int) -> np.ndarray:
        """The row numbers the shard at this point of the epoch yields, in order (the shard is
        self._loaded[1]); only one shard is held, the previous one let go before the next is read."""
        key = (epoch, shard_index)
        if self._loaded is None or self._loaded[0] != key:
            self._loaded = None
            order = _rng(self._seed, _stable_id(self.cluster), epoch).permutation(len(self._shards))
            shard = ShardRows.of(self._reader(self._shards[order[shard_index]]))
            factor = np.array([self._factor.get(name, 0.0) for name in shard.task_names], dtype=np.float64)[shard.task_codes]
            rng = _rng(self._seed, _stable_id(self.cluster), epoch, shard_index)
            whole = np.floor(factor)
            copies = whole.astype(np.int64) + (rng.random(len(factor)) < factor - whole)
            yielded = np.repeat(np.arange(len(factor)), copies)
            if epoch == 0:
                self._found.update(name for name in shard.task_names if name in self._factor)
                self._searched.add(shard_index)
            self._loaded = (key, shard, yielded[rng.permutation(len(yielded))])
        return self._loaded[2]

    def peek(self) -> Example:
        """The next example, without moving (skips to the next shard or epoch as needed)."""
        empty_in_a_row = 0
        p = self.position
        while True:
            rows = self._rows(p.epoch, p.shard)
            if p.row < len(rows):
                assert self._loaded is not None
                return self._loaded[1].example(int(rows[p.row]))
            empty_in_a_row = empty_in_a_row + 1 if not len(rows) else 0
            if empty_in_a_row > len(self._shards):
                raise DataError(f"cluster {self.cluster}: its shards yield none of its weighted tasks' rows")
            p.shard, p.row = p.shard + 1, 0
            if p.shard == len(self._shards):
                missing = sorted(self.tasks - self._found) if len(self._searched) == len(self._shards) else []
                if p.epoch == 0 and missing:
                    raise DataError(f"task(s) {', '.join(missing)}: the {self.cluster} shards hold none of their rows, although the manifest counts some")
                p.epoch, p.shard = p.epoch + 1, 0

    def advance(self) -> None:
        self.peek()
        self.position.row += 1


@dataclass
class Mixture:
    """Samples cluster streams in proportion to their tasks' summed weights, so each task is drawn
    at its weight; the cluster of the i-th example depends only on (seed, i)."""

    streams: dict[str, ClusterStream]
    weights: dict[str, float]
    seed: int
    drawn: int = 0
    drawn_by_task: Counter = field(default_factory=Counter)
    _block: tuple[int, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self._clusters = sorted(self.streams)
        share = {c: sum(w for t, w in self.weights.items() if t in self.streams[c].tasks) for c in self._clusters}
        self._p = np.array([share[c] for c in self._clusters])
        self._p = self._p / self._p.sum()

    def cluster_at(self, i: int) -> str:
        b = i // MIXTURE_BLOCK
        if self._block is None or self._block[0] != b:
            self._block = (b, _rng(self.seed, 0x6D6978, b).choice(len(self._clusters), MIXTURE_BLOCK, p=self._p))
        return self._clusters[int(self._block[1][i % MIXTURE_BLOCK])]

    def peek(self) -> Example:
        return self.streams[self.cluster_at(self.drawn)].peek()

    def advance(self) -> None:
        stream = self.streams[self.cluster_at(self.drawn)]
        self.drawn_by_task[stream.peek().task] += 1
        stream.advance()
        self.drawn += 1

    def __iter__(self) -> "Mixture":
        return self

    def __next__(self) -> Example:
        example = self.peek()
        self.advance()
        return example

    def state(self) -> dict:
        """JSON-serialisable position of the whole mixture (saved with every checkpoint)."""
        return {
            "drawn": self.drawn,
            "clusters": {c: vars(s.position).copy() for c, s in sorted(self.streams.items())},
            "examples_by_task": dict(sorted(self.drawn_by_task.items())),
        }

    def restore(self, state: Mapping) -> None:
        if "clusters" not in state:
            raise DataError("the checkpoint's data position is per task, from a flanforge before streams were per cluster; start the run afresh")
        if sorted(state["clusters"]) != sorted(self.streams):
            raise DataError("the checkpoint's data position names other clusters than this run mixes; the corpus or selection changed")
        self.drawn = int(state["drawn"])
        self.drawn_by_task = Counter(state["examples_by_task"])
        for c, pos in state["clusters"].items():
            self.streams[c].position = StreamPosition(**pos)


def build_mixture(manifest: Manifest, shards: list[ShardInfo], weights: Mapping[str, float], seed: int) -> Mixture:
    """One ClusterStream per cluster with weighted tasks, over its shards, mixed so that each task
    is drawn with its weight."""
    def reader(shard: ShardInfo) -> pa.Table:
        return read_output_shard(manifest, shard, TRAIN_COLUMNS)

    sizes = task_sizes(manifest, shards)
    streams = {}
    for cluster in sorted({manifest.tasks[t].cluster for t in weights}):
        mine = {t: w for t, w in weights.items() if manifest.tasks[t].cluster == cluster}
        streams[cluster] = ClusterStream(cluster, [s for s in shards if s.cluster == cluster], reader, mine, sizes, seed)
    return Mixture(streams=streams, weights=dict(weights), seed=seed)
